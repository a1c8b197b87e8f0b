//! QCOW2 export speed and size against `qemu-img convert`, in one run.
//!
//! Usage: `cargo bench -p chasi-formats --bench qcow2_vs_qemu_img -- ROOTFS.img [RUNS]`
//! (`scripts/bench-formats.sh` builds a ~1 GiB ext4 root filesystem image and calls this).
//! The root filesystem is put in the root partition of a GPT data disk; then:
//! 1. our raw export of that disk (the input qemu-img gets),
//! 2. our plain qcow2 vs `qemu-img convert -O qcow2 raw` (time ratio, want ≤ 1.0),
//! 3. our zstd qcow2 vs `qemu-img convert -c -O qcow2 -o compression_type=zstd raw`
//!    (time ratio, want < 1.0; size ratio, want within 5 %),
//!
//! each twice: without fsync on either side (qemu-img's default), and with an fsync of the
//! output on both sides (our default, which makes the export durable before the rename).
//!
//! Each timing is the best of RUNS (default 2) interleaved runs, each started after a
//! `sync` so that no run pays for the previous one's dirty pages; every output is checked with
//! `qemu-img compare` against the raw export and `qemu-img check`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chasi_formats::disk::DiskSource;
use chasi_formats::gpt::{GptLayout, PartitionSpec, ROOT_X86_64_TYPE};
use chasi_formats::qcow2::{write_qcow2, Qcow2Compression, Qcow2Options};
use chasi_formats::raw::write_raw_with;

fn fail(msg: String) -> ! {
    eprintln!("bench-formats: {msg}");
    std::process::exit(1)
}

fn qemu_img(args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            fail(format!(
                "cannot run qemu-img (Debian package qemu-utils): {e}"
            ))
        });
    let d = t.elapsed();
    if !o.status.success() {
        fail(format!(
            "qemu-img {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    d
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| fail(format!("stat {}: {e}", p.display())))
        .len()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(rootfs) = args.first().map(PathBuf::from) else {
        println!("qcow2_vs_qemu_img: no ROOTFS.img given; run scripts/bench-formats.sh");
        return;
    };
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2).max(1);
    let work = tempfile::Builder::new()
        .prefix("chasi-bench-")
        .tempdir_in(rootfs.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|e| fail(format!("temp dir: {e}")));
    let w = work.path();

    let parts = [PartitionSpec {
        name: "root".into(),
        type_guid: ROOT_X86_64_TYPE,
        size: Some(size(&rootfs)),
    }];
    let disk_size = GptLayout::required_size(&parts).unwrap_or_else(|e| fail(e.to_string()));
    let layout =
        GptLayout::new(disk_size, b"bench", &parts).unwrap_or_else(|e| fail(e.to_string()));
    let disk = layout
        .assemble(&[(0, rootfs.as_path())])
        .unwrap_or_else(|e| fail(e.to_string()));
    let used: u64 = disk
        .allocated_ranges()
        .unwrap_or_else(|e| fail(e.to_string()))
        .iter()
        .map(|r| r.end - r.start)
        .sum();
    println!(
        "disk: {:.0} MiB virtual, {:.0} MiB allocated (root fs {})",
        disk.size() as f64 / 1048576.0,
        used as f64 / 1048576.0,
        rootfs.display()
    );

    let raw = w.join("disk.raw");
    let t = Instant::now();
    write_raw_with(&disk, &raw, false).unwrap_or_else(|e| fail(e.to_string()));
    println!(
        "our raw export:                {:>8.2} s",
        t.elapsed().as_secs_f64()
    );
    let raw_s = raw
        .to_str()
        .unwrap_or_else(|| fail("non-UTF-8 temp path".into()));

    let plain = Qcow2Options::default();
    let zstd = Qcow2Options {
        compression: Qcow2Compression::Zstd { level: 3 },
        threads: 2,
        ..Default::default()
    };
    let qemu_plain: &[&str] = &["convert", "-O", "qcow2"];
    let qemu_zstd: &[&str] = &[
        "convert",
        "-c",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd",
    ];
    // qemu-img convert does not fsync its output (default cache mode "unsafe"): compare
    // like with like, once without sync on both sides and once with an fsync on both.
    for (label, opts, qargs) in [
        ("qcow2", &plain, qemu_plain),
        ("qcow2+zstd", &zstd, qemu_zstd),
    ] {
        for sync in [false, true] {
            let ours = w.join("ours.qcow2");
            let theirs = w.join("qemu.qcow2");
            let o = Qcow2Options {
                sync,
                ..opts.clone()
            };
            // Interleaved, each run starting from a clean page cache state (`sync` first),
            // so neither side pays for the other's dirty pages; best of `runs`.
            let mut t_ours = Duration::MAX;
            let mut t_qemu = Duration::MAX;
            for _ in 0..runs {
                let _ = std::fs::remove_file(&ours);
                rustix::fs::sync();
                let t = Instant::now();
                write_qcow2(&disk, &ours, &o).unwrap_or_else(|e| fail(e.to_string()));
                t_ours = t_ours.min(t.elapsed());

                let _ = std::fs::remove_file(&theirs);
                rustix::fs::sync();
                let t = Instant::now();
                let mut a = qargs.to_vec();
                a.push(raw_s);
                a.push(theirs.to_str().unwrap_or_default());
                qemu_img(&a);
                if sync {
                    std::fs::File::open(&theirs)
                        .and_then(|f| f.sync_all())
                        .unwrap_or_else(|e| fail(format!("fsync {}: {e}", theirs.display())));
                }
                t_qemu = t_qemu.min(t.elapsed());
            }
            verify(raw_s, &ours);
            println!(
                "{label:<11} {mode:<8} ours {:>6.2} s {:>5.0} MiB | qemu-img {:>6.2} s {:>5.0} MiB | time ratio {:.2} | size ratio {:.3}",
                t_ours.as_secs_f64(),
                size(&ours) as f64 / 1048576.0,
                t_qemu.as_secs_f64(),
                size(&theirs) as f64 / 1048576.0,
                t_ours.as_secs_f64() / t_qemu.as_secs_f64(),
                size(&ours) as f64 / size(&theirs) as f64,
                mode = if sync { "+fsync" } else { "no sync" },
            );
        }
    }
}

fn verify(raw: &str, q: &Path) {
    let q = q.to_str().unwrap_or_default();
    qemu_img(&["compare", "-f", "raw", "-F", "qcow2", raw, q]);
    qemu_img(&["check", q]);
}
