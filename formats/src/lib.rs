//! `chasi-formats`: OCI layout I/O and the exporters (disk images, ISO, archives).

pub mod oci;
