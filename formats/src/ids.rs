//! Deterministic identifiers: every UUID, GUID, CID and MAC an export writes is derived from
//! a caller-supplied seed (normally the image digest) and a purpose label, so the same image
//! and options give byte-identical output (reproducibility rule of the architecture).

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// 32 bytes derived from `seed` and `label` (SHA-256 over a domain-separated encoding).
pub fn derive_bytes(seed: &[u8], label: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"chasi-formats/v1\0");
    h.update((label.len() as u64).to_be_bytes());
    h.update(label.as_bytes());
    h.update(seed);
    h.finalize().into()
}

/// An RFC 9562 version-8 (custom) UUID derived from `seed` and `label`.
pub fn derive_uuid(seed: &[u8], label: &str) -> Uuid {
    let d = derive_bytes(seed, label);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

/// A 32-bit value derived from `seed` and `label` (VMDK content IDs).
pub fn derive_u32(seed: &[u8], label: &str) -> u32 {
    let d = derive_bytes(seed, label);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A locally administered unicast MAC address derived from `seed` and `label`.
pub fn derive_mac(seed: &[u8], label: &str) -> [u8; 6] {
    let d = derive_bytes(seed, label);
    [(d[0] & 0xfc) | 0x02, d[1], d[2], d[3], d[4], d[5]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_label_separated() {
        let a = derive_uuid(b"sha256:abc", "gpt-disk");
        assert_eq!(a, derive_uuid(b"sha256:abc", "gpt-disk"));
        assert_ne!(a, derive_uuid(b"sha256:abc", "gpt-part-1"));
        assert_ne!(a, derive_uuid(b"sha256:abd", "gpt-disk"));
        assert_eq!(a.get_version_num(), 8);
        let m = derive_mac(b"x", "nic0");
        assert_eq!(m[0] & 0x03, 0x02);
    }
}
