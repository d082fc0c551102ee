//! The two proofs of the handshake: HMAC-SHA256 over the exchange, keyed by the cookie.
//!
//! Why a file of its own: this is the only code that touches the cookie, and the exact byte
//! layout of the MAC input is part of the protocol (an old and a new node must compute the
//! same MACs). Keeping it small and separate makes both easy to audit.
//!
//! `mac_x = HMAC-SHA256(cookie, label_x ‖ lp(cluster) ‖ lp(dialer) ‖ lp(acceptor) ‖
//! dialer_incarnation ‖ acceptor_incarnation ‖ nonce_d ‖ nonce_a)` with `lp(s)` = `s`
//! prefixed by its length as a big-endian `u64`, and big-endian incarnations. The distinct
//! labels stop a MAC from being reflected back to its sender. Received MACs are compared in
//! constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Label of the MAC the acceptor sends in `Challenge`.
pub(super) const ACCEPTOR_LABEL: &[u8] = b"gen_leader/acceptor";
/// Label of the MAC the dialer sends in `Auth`.
pub(super) const DIALER_LABEL: &[u8] = b"gen_leader/dialer";
/// Label of the MAC a node sends an observer in `ObserverChallenge`. Observers have labels of
/// their own, so that no proof made for an observer session can be replayed as a member's,
/// nor the other way round (an observer's name could otherwise be chosen to be a member's).
pub(super) const OBSERVED_LABEL: &[u8] = b"gen_leader/observed";
/// Label of the MAC an observer sends in `Auth`.
pub(super) const OBSERVER_LABEL: &[u8] = b"gen_leader/observer";

type HmacSha256 = Hmac<Sha256>;

/// The cookie cannot be used as an HMAC key. HMAC accepts keys of any length, so this does
/// not happen with the `hmac` crate in use; it is kept typed rather than unwrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UnusableKey;

/// The fields both MACs are computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transcript {
    pub(super) cluster: String,
    pub(super) dialer: String,
    pub(super) acceptor: String,
    pub(super) dialer_incarnation: u64,
    pub(super) acceptor_incarnation: u64,
    pub(super) dialer_nonce: [u8; 16],
    pub(super) acceptor_nonce: [u8; 16],
}

impl Transcript {
    fn hmac(&self, cookie: &[u8], label: &[u8]) -> Result<HmacSha256, UnusableKey> {
        let mut mac = HmacSha256::new_from_slice(cookie).map_err(|_| UnusableKey)?;
        mac.update(label);
        for s in [&self.cluster, &self.dialer, &self.acceptor] {
            mac.update(&(s.len() as u64).to_be_bytes());
            mac.update(s.as_bytes());
        }
        mac.update(&self.dialer_incarnation.to_be_bytes());
        mac.update(&self.acceptor_incarnation.to_be_bytes());
        mac.update(&self.dialer_nonce);
        mac.update(&self.acceptor_nonce);
        Ok(mac)
    }

    /// The MAC this side sends, under `label`.
    pub(super) fn sign(&self, cookie: &[u8], label: &[u8]) -> Result<[u8; 32], UnusableKey> {
        Ok(self.hmac(cookie, label)?.finalize().into_bytes().into())
    }

    /// Constant-time check of a received MAC.
    pub(super) fn verify(
        &self,
        cookie: &[u8],
        label: &[u8],
        mac: &[u8; 32],
    ) -> Result<bool, UnusableKey> {
        Ok(self.hmac(cookie, label)?.verify_slice(mac).is_ok())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in super::super) fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The transcript of the pinned exchange (see `tests.rs`).
    pub(in super::super) fn pinned() -> Transcript {
        Transcript {
            cluster: "pin".into(),
            dialer: "a@127.0.0.1:4001".into(),
            acceptor: "b@127.0.0.1:4002".into(),
            dialer_incarnation: 11,
            acceptor_incarnation: 22,
            dialer_nonce: [0xd1; 16],
            acceptor_nonce: [0xa2; 16],
        }
    }

    /// MACs computed by the pre-refactor implementation for the same transcript and cookie.
    #[test]
    fn macs_are_pinned() {
        let t = pinned();
        assert_eq!(
            hex(&t.sign(b"pin cookie", ACCEPTOR_LABEL).unwrap()),
            "307598f05ce74bfb96982cd60386618082db381e65e4e12a78474b0219d84aa2"
        );
        assert_eq!(
            hex(&t.sign(b"pin cookie", DIALER_LABEL).unwrap()),
            "fbce32a06195d0b53fbe88f8fb0e8b92d5badb7dd92e8260c9d3f5b2000f1425"
        );
    }

    #[test]
    fn verify_accepts_only_the_matching_mac() {
        let t = pinned();
        let mac = t.sign(b"pin cookie", DIALER_LABEL).unwrap();
        assert_eq!(t.verify(b"pin cookie", DIALER_LABEL, &mac), Ok(true));
        // Reflected (other label), other key, one bit flipped, other transcript: all wrong.
        assert_eq!(t.verify(b"pin cookie", ACCEPTOR_LABEL, &mac), Ok(false));
        assert_eq!(t.verify(b"pin cookiE", DIALER_LABEL, &mac), Ok(false));
        let mut flipped = mac;
        flipped[31] ^= 1;
        assert_eq!(t.verify(b"pin cookie", DIALER_LABEL, &flipped), Ok(false));
        let mut other = pinned();
        other.acceptor_incarnation = 23;
        assert_eq!(other.verify(b"pin cookie", DIALER_LABEL, &mac), Ok(false));
    }

    #[test]
    fn length_prefixes_separate_the_names() {
        // Moving a character from one name to the next must change the MAC.
        let t = pinned();
        let mut shifted = pinned();
        shifted.cluster = "pi".into();
        shifted.dialer = "na@127.0.0.1:4001".into();
        assert_ne!(
            t.sign(b"k", DIALER_LABEL).unwrap(),
            shifted.sign(b"k", DIALER_LABEL).unwrap()
        );
        // Any key length is usable, including none.
        assert!(t.sign(b"", DIALER_LABEL).is_ok());
        assert!(t.sign(&[0u8; 1000], DIALER_LABEL).is_ok());
    }
}
