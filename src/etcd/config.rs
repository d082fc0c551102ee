//! [`EtcdConfig`]: where etcd is, which election to join, and the lease's timing.
//!
//! Why a separate, validated struct: every number here bounds a safety argument (the TTL is
//! what etcd enforces, `max_drift` and `margin` are what the local lease clock takes off it),
//! so a bad value must be refused with a typed error when the backend starts, not discovered
//! as two leaders later.

use std::time::Duration;

/// The smallest TTL accepted. etcd counts TTLs in whole seconds and raises any TTL below
/// about 1.5 × its own election timeout (1.5 s with its defaults) to that minimum.
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// The largest TTL etcd grants (its `MaxLeaseTTL`).
pub const MAX_TTL: Duration = Duration::from_secs(9_000_000_000);

/// The largest `max_drift` accepted (50 %): beyond it the lease clock keeps almost nothing.
pub const MAX_DRIFT_LIMIT: f64 = 0.5;

/// How the etcd backend reaches etcd and times its lease. Build it with [`EtcdConfig::new`]
/// and the `with_*` setters; [`EtcdConfig::validate`] (called by
/// [`EtcdElection::start`](super::EtcdElection::start)) checks it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379` (plain HTTP; TLS is not supported yet).
    pub endpoints: Vec<String>,
    /// The election's name: the key prefix every campaigner of one cluster shares.
    pub election: String,
    /// The lease's TTL, whole seconds, at least [`MIN_TTL`]. A crashed leader is replaced
    /// after about this long; a healthy one renews every `ttl / 3`.
    pub ttl: Duration,
    /// How long one connection attempt to an endpoint may take.
    pub connect_timeout: Duration,
    /// How long one request (grant, keep-alive stream set-up, check, resign, revoke, observe
    /// set-up) may take. The campaign itself has no timeout: it waits while another leads.
    pub request_timeout: Duration,
    /// ρ: the bound on this machine's clock *rate* error against etcd's (0.01 = 1 %).
    pub max_drift: f64,
    /// δ: taken off the local lease for processing and scheduling delays.
    pub margin: Duration,
}

/// Why an [`EtcdConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdConfigError {
    /// No endpoint was given.
    #[error("etcd: at least one endpoint is needed (e.g. http://127.0.0.1:2379)")]
    NoEndpoints,
    /// An endpoint is not an `http://host:port` URL.
    #[error("etcd: endpoint {0:?} is not http://HOST:PORT (TLS is not supported yet)")]
    BadEndpoint(String),
    /// The election name is empty.
    #[error("etcd: the election name must not be empty")]
    EmptyElection,
    /// The TTL is shorter than [`MIN_TTL`].
    #[error("etcd: ttl {0:?} is below the minimum of 2 s (etcd's minimum TTL is coarse)")]
    TtlTooShort(Duration),
    /// The TTL is longer than [`MAX_TTL`], which etcd refuses.
    #[error("etcd: ttl {0:?} is above etcd's maximum of 9 000 000 000 s")]
    TtlTooLong(Duration),
    /// The TTL is not a whole number of seconds (etcd's unit).
    #[error("etcd: ttl {0:?} is not a whole number of seconds (etcd counts TTLs in seconds)")]
    TtlNotWholeSeconds(Duration),
    /// A timeout is zero.
    #[error("etcd: {0} must be more than zero")]
    ZeroTimeout(&'static str),
    /// `max_drift` is not within `0 ..= 0.5`.
    #[error("etcd: max_drift {0} must be within 0 ..= 0.5")]
    BadDrift(f64),
    /// After taking drift and margin off the TTL, less than half of it would be left, or less
    /// than one keep-alive interval plus a request timeout: the lease would end between
    /// renewals.
    #[error("etcd: the local lease ({lease:?}) left after drift and margin is too short for a ttl of {ttl:?}")]
    LeaseTooShort {
        /// The configured TTL.
        ttl: Duration,
        /// `ttl·(1−ρ)/(1+ρ) − δ`.
        lease: Duration,
    },
}

impl EtcdConfig {
    /// A configuration with the defaults: TTL 5 s, connect timeout 2 s, request timeout
    /// 1 s, ρ = 1 %, δ = 100 ms.
    pub fn new<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
        election: impl Into<String>,
    ) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            election: election.into(),
            ttl: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(1),
            max_drift: 0.01,
            margin: Duration::from_millis(100),
        }
    }

    /// Sets the lease TTL (whole seconds, at least [`MIN_TTL`]).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets ρ, the clock rate error bound (0.01 = 1 %).
    pub fn with_max_drift(mut self, max_drift: f64) -> Self {
        self.max_drift = max_drift;
        self
    }

    /// Sets δ, the margin taken off the local lease.
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// ρ in parts per million, as the lease clock uses it.
    pub(crate) fn drift_ppm(&self) -> u32 {
        // Validated to 0 ..= 0.5, so the product fits.
        (self.max_drift.clamp(0.0, MAX_DRIFT_LIMIT) * 1_000_000.0).round() as u32
    }

    /// The TTL in etcd's unit.
    pub(crate) fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)
    }

    /// Checks every field; see [`EtcdConfigError`].
    pub fn validate(&self) -> Result<(), EtcdConfigError> {
        if self.endpoints.is_empty() {
            return Err(EtcdConfigError::NoEndpoints);
        }
        for e in &self.endpoints {
            let rest = e.strip_prefix("http://").unwrap_or("");
            let hostport = rest.strip_suffix('/').unwrap_or(rest);
            let ok = match hostport.rsplit_once(':') {
                Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
                None => false,
            };
            if !ok {
                return Err(EtcdConfigError::BadEndpoint(e.clone()));
            }
        }
        if self.election.is_empty() {
            return Err(EtcdConfigError::EmptyElection);
        }
        if self.ttl < MIN_TTL {
            return Err(EtcdConfigError::TtlTooShort(self.ttl));
        }
        if self.ttl > MAX_TTL {
            return Err(EtcdConfigError::TtlTooLong(self.ttl));
        }
        if self.ttl.subsec_nanos() != 0 {
            return Err(EtcdConfigError::TtlNotWholeSeconds(self.ttl));
        }
        if self.connect_timeout.is_zero() {
            return Err(EtcdConfigError::ZeroTimeout("connect_timeout"));
        }
        if self.request_timeout.is_zero() {
            return Err(EtcdConfigError::ZeroTimeout("request_timeout"));
        }
        if !(0.0..=MAX_DRIFT_LIMIT).contains(&self.max_drift) {
            return Err(EtcdConfigError::BadDrift(self.max_drift));
        }
        let lease = super::lease_clock::local_lease(self.ttl, self.drift_ppm(), self.margin);
        if lease < self.ttl / 2 || lease < (self.ttl / 3).saturating_add(self.request_timeout) {
            return Err(EtcdConfigError::LeaseTooShort {
                ttl: self.ttl,
                lease,
            });
        }
        Ok(())
    }

    /// The local lease that one acknowledged renewal of this TTL buys, counted from the
    /// renewal's send time: `ttl·(1−ρ)/(1+ρ) − δ`.
    pub fn local_lease(&self) -> Duration {
        super::lease_clock::local_lease(self.ttl, self.drift_ppm(), self.margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> EtcdConfig {
        EtcdConfig::new(["http://127.0.0.1:2379"], "gen-leader/test")
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(ok().validate(), Ok(()));
        assert_eq!(ok().drift_ppm(), 10_000);
        assert_eq!(ok().ttl_secs(), 5);
    }

    #[test]
    fn refuses_bad_values_with_typed_errors() {
        let c = EtcdConfig::new(Vec::<String>::new(), "e");
        assert_eq!(c.validate(), Err(EtcdConfigError::NoEndpoints));
        for bad in [
            "127.0.0.1:2379",
            "https://h:1",
            "http://:1",
            "http://h",
            "http://h:0",
        ] {
            let c = EtcdConfig::new([bad], "e");
            assert_eq!(
                c.validate(),
                Err(EtcdConfigError::BadEndpoint(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            EtcdConfig::new(["http://h:1/"], "e").validate(),
            Ok(()),
            "a trailing slash is fine"
        );
        assert_eq!(
            EtcdConfig::new(["http://h:1"], "").validate(),
            Err(EtcdConfigError::EmptyElection)
        );
        let s = Duration::from_millis(1500);
        assert_eq!(
            ok().with_ttl(s).validate(),
            Err(EtcdConfigError::TtlTooShort(s))
        );
        let s = Duration::from_secs(u64::MAX);
        assert_eq!(
            ok().with_ttl(s).validate(),
            Err(EtcdConfigError::TtlTooLong(s))
        );
        let s = Duration::from_millis(2500);
        assert_eq!(
            ok().with_ttl(s).validate(),
            Err(EtcdConfigError::TtlNotWholeSeconds(s))
        );
        assert_eq!(
            ok().with_request_timeout(Duration::ZERO).validate(),
            Err(EtcdConfigError::ZeroTimeout("request_timeout"))
        );
        assert_eq!(
            ok().with_connect_timeout(Duration::ZERO).validate(),
            Err(EtcdConfigError::ZeroTimeout("connect_timeout"))
        );
        assert_eq!(
            ok().with_max_drift(0.6).validate(),
            Err(EtcdConfigError::BadDrift(0.6))
        );
        assert!(matches!(
            ok().with_max_drift(f64::NAN).validate(),
            Err(EtcdConfigError::BadDrift(_))
        ));
        assert!(matches!(
            ok().with_margin(Duration::from_secs(3)).validate(),
            Err(EtcdConfigError::LeaseTooShort { .. })
        ));
        // 2 s TTL, 1 s request timeout: 1.86 s lease < 0.67 s + 1 s? No: 1.86 ≥ 1.67, fine.
        assert_eq!(ok().with_ttl(Duration::from_secs(2)).validate(), Ok(()));
        assert!(matches!(
            ok().with_ttl(Duration::from_secs(2))
                .with_request_timeout(Duration::from_millis(1300))
                .validate(),
            Err(EtcdConfigError::LeaseTooShort { .. })
        ));
    }
}
