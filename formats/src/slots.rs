//! The A/B disk layout of `chasi export --slots ab`, in one place for the two programs that must agree
//! on it: the exporter that writes the disk and `chasi-node`, which switches between its slots.
//!
//! # Layout
//!
//! A GPT disk with four partitions, found by their GPT names: `esp` (GRUB and its script), `chasi-a`
//! and `chasi-b` (the two root file systems, ext4 of the same size) and `chasi-data` (ext4: the node's
//! state, `/var/lib/chasi-node` on the running system, and the GRUB environment block `grubenv` at its
//! root). Two root partitions rather than slot directories on one file system (OSTree's way) because the
//! image's own initramfs then mounts its root unchanged (`root=PARTUUID=`), a slot is replaced without
//! touching the running one, and a kernel update inside a slot needs no boot-loader change; the cost is
//! twice the root size, which a delta-fed node pays anyway for the store. The runtime never needs `mkfs`:
//! both slot file systems are made at export and a new image is written by emptying and refilling one.
//!
//! # Boot choice and boot counting (RAUC's scheme, with a confirmed flag)
//!
//! `grubenv` holds `order` (the two slot names, first = the one to boot) and per slot `X_ok` (1: may be
//! booted: complete and not failed), `X_good` (1: confirmed by `chasi-node`), `X_try` (1: GRUB booted it
//! once unconfirmed), `X_kernel` and `X_initrd` (paths inside the slot). GRUB takes the first slot of
//! `order` that is `ok` and either `good` or not yet tried; booting an unconfirmed slot sets its `try`
//! first (one `save_env`), so a boot that never confirms falls back to the other slot by itself. When no
//! slot qualifies GRUB boots the first of `order` that is `ok`, else the first: a node never loops
//! between two broken slots. `chasi-node` rewrites the block in place (GRUB's own `save_env` does the
//! same); every variable fits in its first 512-byte sector, so a torn write cannot mix two versions.

use crate::export::{ExportError, ExportResult};
use serde::{Deserialize, Serialize};

/// GPT name of the EFI System Partition.
pub const PART_ESP: &str = "esp";
/// GPT names of the two slot partitions, slot `a` then slot `b`.
pub const PART_SLOTS: [&str; 2] = ["chasi-a", "chasi-b"];
/// GPT name of the node-state partition.
pub const PART_DATA: &str = "chasi-data";
/// The slot names, in the order of [`PART_SLOTS`].
pub const SLOT_NAMES: [&str; 2] = ["a", "b"];
/// The GRUB environment block, at the root of the data partition.
pub const GRUBENV: &str = "grubenv";
/// The kernel command-line parameter naming the booted slot (`chasi.slot=a`).
pub const CMDLINE_SLOT: &str = "chasi.slot";
/// Where the GRUB script lives on the ESP.
pub const GRUB_CFG: &str = "EFI/chasi/grub.cfg";

/// Where an installer medium's live system holds the A/B disk (`chasi export --format iso --slots ab`).
pub const INSTALL_DIR: &str = "chasi/install";
/// The installer's manifest, in [`INSTALL_DIR`].
pub const INSTALL_MANIFEST: &str = "install.json";

/// `install.json`: the A/B disk an installer carries, for `chasi-node install`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallManifest {
    /// 1.
    pub format: u32,
    /// The zstd-compressed raw disk, beside the manifest.
    pub disk: String,
    /// Bytes of the raw disk.
    pub size: u64,
    /// SHA-256 of the compressed disk file (`sha256:…`); its zstd frames carry content checksums.
    pub sha256: String,
    /// The image in slot `a` (its manifest digest).
    pub image: String,
}

/// The version of [`InstallManifest`] written and read.
pub const INSTALL_FORMAT: u32 = 1;

/// Size of a GRUB environment block.
pub const ENV_SIZE: usize = 1024;
/// Bytes of the block the variables must fit in (one sector).
pub const ENV_LIMIT: usize = 512;
const ENV_HEADER: &str = "# GRUB Environment Block\n";

/// One slot's boot variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotBoot {
    /// May be booted (complete, not failed).
    pub ok: bool,
    /// Confirmed.
    pub good: bool,
    /// Booted once while unconfirmed.
    pub tried: bool,
    /// The kernel's absolute path inside the slot (`/boot/vmlinuz-…`); empty when the slot is empty.
    pub kernel: String,
    /// The initrd's absolute path inside the slot, if any.
    pub initrd: String,
}

/// The boot state in `grubenv`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootEnv {
    /// The index (0 = `a`, 1 = `b`) of the first slot of `order`.
    pub first: usize,
    /// Slot `a` and slot `b`.
    pub slots: [SlotBoot; 2],
}

fn flag(v: bool) -> &'static str {
    if v {
        "1"
    } else {
        "0"
    }
}

impl BootEnv {
    /// The slot GRUB will boot next (index), by the rule in the module documentation.
    pub fn next_boot(&self) -> usize {
        let order = [self.first, 1 - self.first];
        order
            .into_iter()
            .find(|&i| self.slots[i].ok && (self.slots[i].good || !self.slots[i].tried))
            .or_else(|| order.into_iter().find(|&i| self.slots[i].ok))
            .unwrap_or(self.first)
    }

    /// The 1024-byte block, or an error naming what does not fit.
    pub fn encode(&self) -> ExportResult<Vec<u8>> {
        let mut s = String::from(ENV_HEADER);
        s.push_str(&format!(
            "order={} {}\n",
            SLOT_NAMES[self.first],
            SLOT_NAMES[1 - self.first]
        ));
        for (name, b) in SLOT_NAMES.iter().zip(&self.slots) {
            for (key, path) in [("kernel", &b.kernel), ("initrd", &b.initrd)] {
                if path.contains(['\n', '\\', '"', '\'', '$', ' ', ';']) {
                    return Err(ExportError::option(
                        "grubenv",
                        format!("slot {name} {key} path {path:?} holds a character GRUB's environment cannot carry"),
                    ));
                }
            }
            s.push_str(&format!(
                "{name}_ok={}\n{name}_good={}\n{name}_try={}\n{name}_kernel={}\n{name}_initrd={}\n",
                flag(b.ok),
                flag(b.good),
                flag(b.tried),
                b.kernel,
                b.initrd
            ));
        }
        if s.len() > ENV_LIMIT {
            return Err(ExportError::option(
                "grubenv",
                format!(
                    "the boot variables take {} bytes, more than the {ENV_LIMIT} of one sector (kernel paths too long)",
                    s.len()
                ),
            ));
        }
        let mut out = s.into_bytes();
        out.resize(ENV_SIZE, b'#');
        Ok(out)
    }

    /// Reads a block written by [`BootEnv::encode`] or rewritten by GRUB's `save_env`.
    pub fn decode(data: &[u8]) -> Result<BootEnv, String> {
        if data.len() != ENV_SIZE {
            return Err(format!(
                "{} bytes, a GRUB environment block has {ENV_SIZE}",
                data.len()
            ));
        }
        let text = std::str::from_utf8(data).map_err(|_| "not UTF-8 text".to_string())?;
        let body = text
            .strip_prefix(ENV_HEADER)
            .ok_or_else(|| "no `# GRUB Environment Block` header".to_string())?;
        let mut env = BootEnv::default();
        let mut seen_order = false;
        for line in body.split('\n') {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {line:?} is not NAME=VALUE"))?;
            if key == "order" {
                env.first = match value.split_whitespace().next() {
                    Some("a") => 0,
                    Some("b") => 1,
                    _ => return Err(format!("order {value:?} does not start with a or b")),
                };
                seen_order = true;
                continue;
            }
            let Some((slot, field)) = key.split_once('_') else {
                continue;
            };
            let Some(i) = SLOT_NAMES.iter().position(|n| *n == slot) else {
                continue;
            };
            let b = &mut env.slots[i];
            let bit = || match value {
                "1" => Ok(true),
                "0" => Ok(false),
                _ => Err(format!("{key}={value:?} is not 0 or 1")),
            };
            match field {
                "ok" => b.ok = bit()?,
                "good" => b.good = bit()?,
                "try" => b.tried = bit()?,
                "kernel" => b.kernel = value.to_string(),
                "initrd" => b.initrd = value.to_string(),
                _ => {}
            }
        }
        if !seen_order {
            return Err("no `order` variable".into());
        }
        Ok(env)
    }
}

/// What the GRUB script needs to know about the disk.
#[derive(Debug, Clone)]
pub struct GrubDisk {
    /// File-system UUID of the data partition.
    pub data_fs_uuid: String,
    /// File-system UUIDs of the slot partitions (a, b).
    pub slot_fs_uuids: [String; 2],
    /// Kernel command line of each slot (root=PARTUUID=… included), without `chasi.slot`.
    pub cmdlines: [String; 2],
}

/// The GRUB script (`EFI/chasi/grub.cfg`, run in GRUB's normal mode) that picks and boots a slot by the
/// rule of the module documentation.
pub fn grub_cfg(d: &GrubDisk) -> String {
    let mut s = String::from(
        "# chasi A/B boot: picks a slot from the environment block on the data partition.\n\
         set timeout=0\nset order=\"a b\"\n",
    );
    for n in SLOT_NAMES {
        s.push_str(&format!(
            "set {n}_ok=0\nset {n}_good=0\nset {n}_try=0\nset {n}_kernel=\nset {n}_initrd=\n"
        ));
    }
    let vars: Vec<String> =
        std::iter::once("order".to_string())
            .chain(SLOT_NAMES.iter().flat_map(|n| {
                ["ok", "good", "try", "kernel", "initrd"].map(|f| format!("{n}_{f}"))
            }))
            .collect();
    s.push_str(&format!(
        "search --no-floppy --fs-uuid --set=chasi_data {}\n\
         if [ -n \"$chasi_data\" ]; then load_env --file ($chasi_data)/{GRUBENV} {}; fi\n\
         set slot=\"\"\n\
         for s in $order; do\n",
        d.data_fs_uuid,
        vars.join(" ")
    ));
    for n in SLOT_NAMES {
        s.push_str(&format!(
            "  if [ -z \"$slot\" -a \"$s\" = {n} -a \"${n}_ok\" = 1 ]; then\n\
             \x20   if [ \"${n}_good\" = 1 ]; then set slot={n}\n\
             \x20   elif [ \"${n}_try\" != 1 ]; then\n\
             \x20     set slot={n}\n\
             \x20     set {n}_try=1\n\
             \x20     save_env --file ($chasi_data)/{GRUBENV} {n}_try\n\
             \x20   fi\n\
             \x20 fi\n"
        ));
    }
    s.push_str("done\n");
    s.push_str(
        "if [ -z \"$slot\" ]; then\n\
         \x20 echo \"chasi: no confirmed or untried slot; booting the first usable one\"\n\
         \x20 for s in $order; do\n",
    );
    for n in SLOT_NAMES {
        s.push_str(&format!(
            "    if [ -z \"$slot\" -a \"$s\" = {n} -a \"${n}_ok\" = 1 ]; then set slot={n}; fi\n"
        ));
    }
    s.push_str(
        "  done\n\
         \x20 if [ -z \"$slot\" ]; then for s in $order; do if [ -z \"$slot\" ]; then set slot=$s; fi; done; fi\n\
         fi\n",
    );
    for (i, n) in SLOT_NAMES.iter().enumerate() {
        s.push_str(&format!(
            "if [ \"$slot\" = {n} ]; then\n\
             \x20 search --no-floppy --fs-uuid --set=root {uuid}\n\
             \x20 echo \"chasi: booting slot {n}: ${n}_kernel\"\n\
             \x20 linux ($root)${n}_kernel {cmdline} {CMDLINE_SLOT}={n}\n\
             \x20 if [ -n \"${n}_initrd\" ]; then initrd ($root)${n}_initrd; fi\n\
             \x20 boot\n\
             fi\n",
            uuid = d.slot_fs_uuids[i],
            cmdline = d.cmdlines[i],
        ));
    }
    s.push_str("echo \"chasi: slot $slot could not be booted\"\n");
    s
}

/// The script embedded in GRUB's EFI image: find the ESP by the script's path and run it.
pub fn grub_loader_script() -> String {
    format!(
        "search --no-floppy --set=root --file /{GRUB_CFG}\nset prefix=($root)/EFI/chasi\nconfigfile ($root)/{GRUB_CFG}\n"
    )
}

/// The booted slot's index named by a kernel command line (`chasi.slot=a`), if any.
pub fn slot_from_cmdline(cmdline: &str) -> Option<usize> {
    cmdline.split_whitespace().find_map(|w| {
        let v = w.strip_prefix(CMDLINE_SLOT)?.strip_prefix('=')?;
        SLOT_NAMES.iter().position(|n| *n == v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BootEnv {
        BootEnv {
            first: 0,
            slots: [
                SlotBoot {
                    ok: true,
                    good: true,
                    tried: false,
                    kernel: "/boot/vmlinuz-6.1.0-28-amd64".into(),
                    initrd: "/boot/initrd.img-6.1.0-28-amd64".into(),
                },
                SlotBoot::default(),
            ],
        }
    }

    #[test]
    fn block_round_trips_and_fits_one_sector() {
        let e = env();
        let block = e.encode().expect("encode");
        assert_eq!(block.len(), ENV_SIZE);
        assert!(block[ENV_LIMIT..].iter().all(|&b| b == b'#'));
        assert_eq!(BootEnv::decode(&block).expect("decode"), e);
    }

    #[test]
    fn a_block_rewritten_by_grub_is_read() {
        // GRUB's save_env rewrites a value in place and keeps the others.
        let mut block = env().encode().expect("encode");
        let text = String::from_utf8(block.clone()).expect("text");
        let at = text.find("b_try=0").expect("b_try") + "b_try=".len();
        block[at] = b'1';
        let e = BootEnv::decode(&block).expect("decode");
        assert!(e.slots[1].tried);
    }

    #[test]
    fn bad_blocks_are_refused() {
        assert!(BootEnv::decode(&[b'#'; 100]).unwrap_err().contains("1024"));
        assert!(BootEnv::decode(&[b'#'; ENV_SIZE])
            .unwrap_err()
            .contains("header"));
        let mut b = env().encode().expect("encode");
        let t = String::from_utf8(b.clone()).expect("text");
        let at = t.find("a_ok=1").expect("a_ok") + 5;
        b[at] = b'x';
        assert!(BootEnv::decode(&b).unwrap_err().contains("a_ok"));
        let mut long = env();
        long.slots[0].kernel = format!("/{}", "k".repeat(400));
        assert!(long.encode().is_err());
        let mut odd = env();
        odd.slots[1].initrd = "/boot/a b".into();
        assert!(odd.encode().is_err());
    }

    #[test]
    fn next_boot_follows_the_counting_rule() {
        let mut e = env();
        assert_eq!(e.next_boot(), 0);
        // b switched to: ok, unconfirmed, untried.
        e.first = 1;
        e.slots[1] = SlotBoot {
            ok: true,
            ..SlotBoot::default()
        };
        assert_eq!(e.next_boot(), 1);
        // GRUB tried it and it never confirmed: back to a.
        e.slots[1].tried = true;
        assert_eq!(e.next_boot(), 0);
        // a failed too: no loop, the first usable slot.
        e.slots[0].good = false;
        e.slots[0].tried = true;
        assert_eq!(e.next_boot(), 1);
        e.slots[1].ok = false;
        assert_eq!(e.next_boot(), 0);
    }

    #[test]
    fn script_names_every_slot_and_the_cmdline_slot() {
        let d = GrubDisk {
            data_fs_uuid: "d-uuid".into(),
            slot_fs_uuids: ["a-uuid".into(), "b-uuid".into()],
            cmdlines: ["root=PARTUUID=pa rw".into(), "root=PARTUUID=pb rw".into()],
        };
        let s = grub_cfg(&d);
        assert!(s.contains("--fs-uuid --set=chasi_data d-uuid"));
        assert!(s.contains("linux ($root)$b_kernel root=PARTUUID=pb rw chasi.slot=b"));
        assert!(s.contains("save_env --file ($chasi_data)/grubenv a_try"));
        assert_eq!(slot_from_cmdline("quiet chasi.slot=b rw"), Some(1));
        assert_eq!(slot_from_cmdline("chasi.slot=c"), None);
        assert_eq!(slot_from_cmdline("chasi.slotx=a"), None);
    }

    #[test]
    fn every_mutation_of_a_block_decodes_or_fails_cleanly() {
        let block = env().encode().expect("encode");
        for at in 0..block.len() {
            for v in [0u8, b'\n', b'=', b'1', 0xff] {
                let mut b = block.clone();
                b[at] = v;
                if let Ok(e) = BootEnv::decode(&b) {
                    assert!(e.next_boot() < 2);
                }
            }
        }
        for len in [0, 1, 511, 1023] {
            assert!(BootEnv::decode(&block[..len]).is_err());
        }
        let mut long = block.clone();
        long.push(b'#');
        assert!(BootEnv::decode(&long).is_err());
    }
}
