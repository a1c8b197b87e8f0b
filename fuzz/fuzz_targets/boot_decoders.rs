//! Fuzz target: what a node reads from its disk at boot and install time — GRUB's environment block
//! and a GPT primary table — on any bytes: an error or a value, never a panic; a decoded block that
//! encodes again reads back the same.
#![no_main]

use chasi_formats::gpt::GptLayout;
use chasi_formats::slots::BootEnv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = BootEnv::decode(data) {
        assert!(env.next_boot() < 2);
        if let Ok(block) = env.encode() {
            assert_eq!(BootEnv::decode(&block).ok(), Some(env));
        }
    }
    for size in [data.len() as u64 / 512 * 512, 1 << 30, 512] {
        if let Ok(layout) = GptLayout::read(data, size) {
            let _ = layout.primary_bytes();
            let _ = layout.backup_bytes();
        }
    }
});
