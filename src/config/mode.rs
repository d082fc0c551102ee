//! The election mode: [`Mode::Bully`] (gen_leader's contract, the default) or
//! [`Mode::Quorum`] with its lease parameters ([`QuorumConfig`]).
//!
//! Why a file of its own: the mode is the one setting that changes what leadership *means*
//! (bully: this node's belief; quorum: a majority's grant with a lease), so its parameters,
//! their validation and their share of the cluster digest live together, where the rule
//! "the leader's lease must outlast two heartbeats" can be read next to the formula.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::election::QuorumParams;
use crate::error::ConfigError;

/// Default quorum lease `E` (see [`QuorumConfig::lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(1);
/// Default bound on clock rate error `ρ` (see [`QuorumConfig::max_drift`]): 1 %.
pub const DEFAULT_MAX_DRIFT: f64 = 0.01;
/// Default margin `δ` (see [`QuorumConfig::margin`]).
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(10);

/// How a cluster elects its leader. Every node of a cluster must use the same mode with the
/// same parameters: the handshake refuses a peer configured otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// gen_leader's contract: availability first. A leader is whoever the reachable nodes
    /// accept, so during a partition each side may have one. The default.
    #[default]
    Bully,
    /// A candidate leads only with the grant of a majority of the candidates, and acts only
    /// while its lease lasts: two leaderships never overlap in time, given clocks whose
    /// *rate* errs by at most [`QuorumConfig::max_drift`]. A node without a majority has no
    /// leader and says so ([`CallError::NoQuorum`](crate::CallError::NoQuorum)).
    Quorum(QuorumConfig),
}

impl Mode {
    /// Quorum mode with the default parameters (lease 1 s, max drift 1 %, margin 10 ms).
    pub fn quorum() -> Mode {
        Mode::Quorum(QuorumConfig::default())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Bully => f.write_str("bully"),
            Mode::Quorum(q) => write!(
                f,
                "quorum (lease {:?}, max_drift {}, margin {:?})",
                q.lease, q.max_drift, q.margin
            ),
        }
    }
}

/// Quorum mode's parameters. Build with [`QuorumConfig::default`] and the setters:
///
/// ```
/// use std::time::Duration;
/// use gen_leader::{Mode, QuorumConfig};
///
/// let mode = Mode::Quorum(QuorumConfig::default().lease(Duration::from_secs(2)).max_drift(0.02));
/// # let _ = mode;
/// ```
///
/// The leader's lease, measured from the send time of the newest renewal a majority
/// acknowledged, is `E·(1−ρ)/(1+ρ) − δ` ([`QuorumConfig::leader_lease`]); it must exceed two
/// heartbeats, or the leader could never renew it in time ([`ConfigBuilder::build`] checks).
///
/// [`ConfigBuilder::build`]: crate::ConfigBuilder::build
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct QuorumConfig {
    lease: Duration,
    max_drift: f64,
    margin: Duration,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            lease: DEFAULT_LEASE,
            max_drift: DEFAULT_MAX_DRIFT,
            margin: DEFAULT_MARGIN,
        }
    }
}

impl QuorumConfig {
    /// `E` (default 1 s): how long a voter's promise lasts after it granted or acknowledged a
    /// leader. A failed leader is replaced about `E` plus one election after it went silent.
    pub fn lease(mut self, e: Duration) -> Self {
        self.lease = e;
        self
    }

    /// `ρ` (default 0.01, i.e. 1 %): the bound on every node's clock *rate* error (not its
    /// offset: clocks need not be synchronised). Must be in `[0, 0.5)`.
    pub fn max_drift(mut self, rho: f64) -> Self {
        self.max_drift = rho;
        self
    }

    /// `δ` (default 10 ms): a margin taken off the leader's lease for processing and
    /// scheduling delays.
    pub fn margin(mut self, delta: Duration) -> Self {
        self.margin = delta;
        self
    }

    /// `E`, as set with [`QuorumConfig::lease`].
    pub fn get_lease(&self) -> Duration {
        self.lease
    }

    /// `ρ`, as set with [`QuorumConfig::max_drift`].
    pub fn get_max_drift(&self) -> f64 {
        self.max_drift
    }

    /// `δ`, as set with [`QuorumConfig::margin`].
    pub fn get_margin(&self) -> Duration {
        self.margin
    }

    /// The leader's lease from the send time of an acknowledged renewal:
    /// `E·(1−ρ)/(1+ρ) − δ` (zero if the margin eats it all). A leader's
    /// [`LeaderGuard::remaining`](crate::LeaderGuard::remaining) never exceeds it.
    pub fn leader_lease(&self) -> Duration {
        self.params(Duration::ZERO, false).leader_lease()
    }

    /// `ρ` in parts per million, as the engine takes it (meaningful once validated).
    fn drift_ppm(&self) -> u32 {
        (self.max_drift * 1e6).round() as u32
    }

    /// The engine's parameters, renewing every `heartbeat`; `durable` if the node has a data
    /// directory.
    pub(crate) fn params(&self, heartbeat: Duration, durable: bool) -> QuorumParams {
        QuorumParams {
            lease: self.lease,
            drift_ppm: self.drift_ppm(),
            margin: self.margin,
            renew_interval: heartbeat,
            durable,
            sticky: true,
        }
    }

    /// Checks the parameters against the heartbeat interval.
    pub(crate) fn validate(&self, heartbeat: Duration) -> Result<(), ConfigError> {
        if !(self.max_drift.is_finite() && (0.0..0.5).contains(&self.max_drift)) {
            return Err(ConfigError::BadDrift {
                max_drift: self.max_drift,
            });
        }
        if self.lease.is_zero() {
            return Err(ConfigError::ZeroDuration("the quorum lease"));
        }
        let day = Duration::from_secs(24 * 3600);
        if self.lease > day || self.margin > day {
            return Err(ConfigError::OutOfRange(
                "the quorum lease or margin (at most 24 hours)",
            ));
        }
        let leader_lease = self.leader_lease();
        if leader_lease <= heartbeat * 2 {
            return Err(ConfigError::LeaseTooShort {
                leader_lease,
                lease: self.lease,
                max_drift: self.max_drift,
                margin: self.margin,
                heartbeat,
            });
        }
        Ok(())
    }
}

/// Feeds the mode and its parameters (as the engine takes them) into the cluster digest.
pub(super) fn digest(mode: &Mode, h: &mut Sha256) {
    match mode {
        Mode::Bully => h.update([0]),
        Mode::Quorum(q) => {
            h.update([1]);
            h.update((q.lease.as_nanos() as u64).to_be_bytes());
            h.update(q.drift_ppm().to_be_bytes());
            h.update((q.margin.as_nanos() as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_and_setters() {
        let q = QuorumConfig::default();
        assert_eq!(
            (q.get_lease(), q.get_max_drift(), q.get_margin()),
            (ms(1000), 0.01, ms(10))
        );
        assert_eq!(Mode::default(), Mode::Bully);
        assert_eq!(Mode::quorum(), Mode::Quorum(q));
        let q = q.lease(ms(2000)).max_drift(0.02).margin(ms(5));
        assert_eq!(
            (q.get_lease(), q.get_max_drift(), q.get_margin()),
            (ms(2000), 0.02, ms(5))
        );
        // E·(1−ρ)/(1+ρ) − δ = 2 s · 0.98 / 1.02 − 5 ms
        let want = 2.0 * 0.98 / 1.02 - 0.005;
        assert!((q.leader_lease().as_secs_f64() - want).abs() < 1e-6);
        assert_eq!(q.params(ms(100), true).drift_ppm, 20_000);
        assert_eq!(q.params(ms(100), true).renew_interval, ms(100));
        assert!(q.params(ms(100), true).sticky);
    }

    #[test]
    fn the_drift_must_be_finite_and_below_one_half() {
        for bad in [-0.01, 0.5, 0.7, f64::NAN, f64::INFINITY] {
            let e = QuorumConfig::default()
                .max_drift(bad)
                .validate(ms(100))
                .unwrap_err();
            assert!(matches!(e, ConfigError::BadDrift { .. }), "{bad}: {e:?}");
            let s = e.to_string();
            assert!(
                s.contains(&format!("max_drift is {bad}")) && s.contains("[0, 0.5)"),
                "{s}"
            );
        }
        for good in [0.0, 0.01, 0.499] {
            assert!(
                QuorumConfig::default()
                    .max_drift(good)
                    .validate(ms(100))
                    .is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn a_lease_the_leader_cannot_keep_is_refused_with_the_numbers() {
        let e = QuorumConfig::default()
            .lease(Duration::ZERO)
            .validate(ms(100))
            .unwrap_err();
        assert_eq!(e.to_string(), "the quorum lease must be greater than zero");
        // 300 ms · 0.99 / 1.01 − 100 ms ≈ 194 ms, not above 2 × 100 ms.
        let e = QuorumConfig::default()
            .lease(ms(300))
            .margin(ms(100))
            .validate(ms(100))
            .unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, ConfigError::LeaseTooShort { .. }), "{e:?}");
        for part in [
            "E·(1−ρ)/(1+ρ) − δ is 194.059",
            "lease E = 300ms",
            "max_drift ρ = 0.01",
            "margin δ = 100ms",
            "2 × the heartbeat (100ms) = 200ms",
            "raise the lease or lower the heartbeat",
        ] {
            assert!(s.contains(part), "{part:?} not in {s}");
        }
        // A margin larger than the lease leaves nothing.
        assert_eq!(
            QuorumConfig::default().margin(ms(2000)).leader_lease(),
            Duration::ZERO
        );
        assert!(QuorumConfig::default().validate(ms(100)).is_ok());
        assert!(QuorumConfig::default().validate(ms(490)).is_err());
        assert!(QuorumConfig::default()
            .lease(Duration::from_secs(100_000))
            .validate(ms(100))
            .is_err());
    }

    #[test]
    fn the_digest_tells_modes_and_parameters_apart() {
        let d = |m: Mode| {
            let mut h = Sha256::new();
            digest(&m, &mut h);
            <[u8; 32]>::from(h.finalize())
        };
        let q = QuorumConfig::default();
        let all = [
            d(Mode::Bully),
            d(Mode::Quorum(q)),
            d(Mode::Quorum(q.lease(ms(999)))),
            d(Mode::Quorum(q.max_drift(0.02))),
            d(Mode::Quorum(q.margin(ms(11)))),
        ];
        for i in 0..all.len() {
            for j in 0..i {
                assert_ne!(all[i], all[j], "{i} vs {j}");
            }
        }
        assert_eq!(d(Mode::quorum()), d(Mode::Quorum(q)));
    }

    #[test]
    fn modes_display_their_parameters() {
        assert_eq!(Mode::Bully.to_string(), "bully");
        assert_eq!(
            Mode::quorum().to_string(),
            "quorum (lease 1s, max_drift 0.01, margin 10ms)"
        );
    }
}
