//! Fuzz target: any bytes loaded as an oci-archive (`chasi load`, into a store, and into an
//! OCI layout directory) must give an image or an error, never a panic or an abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "archive_load.rs"]
mod archive_load;

fuzz_target!(|data: &[u8]| {
    archive_load::load_all(data, "oci-archive.tar");
});
