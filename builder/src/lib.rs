//! `chasi-builder`: executes a checked build plan into images in the layer store.
//!
//! It sits between the pure compiler (Kubefile → plan, no I/O beyond reading the context)
//! and the store: each layer-producing step is executed here, cached by its plan identity,
//! and the final OCI image (config, manifest, index, sealer extension) is assembled here.
//!
//! - [`exec`] executes a [`chasi_compiler::plan::Plan`], which carries every step it needs
//!   ([`exec::carry`] puts the container images a cluster needs into its image, `--build-mode all`);
//!   [`kubefile`] is the whole Kubefile → image sequence in one call.
//! - [`sandbox`] runs `RUN` commands in namespaces over an overlay; the upper dir is the diff.
//! - [`runconfig`] decides whether `CMD`/`CMDS` become the OCI `Cmd` (container images) or
//!   stay in the sealer extension only (cluster images).
//! - [`fetch`] brings remote `APP`/`ADD` sources into the store, revalidated by `ETag`;
//!   [`pull`] brings `FROM` images of a registry into it, once; [`remotecache`] shares the
//!   build cache through a registry (`--cache-to`, `--cache-from`).
//! - [`events`] is how the executor reports progress; it never prints.

pub mod archive;
pub mod assemble;
pub mod copy;
pub mod error;
pub mod events;
pub mod exec;
pub mod fetch;
pub mod filecache;
pub mod kubefile;
pub mod pull;
pub mod remotecache;
pub mod rootfs;
pub mod run;
pub mod runconfig;
pub mod sandbox;
pub mod state;

pub use error::{BuildError, BuildThread, ChownError, DestinationError, Result, StepError};
pub use exec::carry::{BuildMode, CarryOptions};
pub use exec::{build, BuildOptions, BuildOutput};
pub use kubefile::{build_kubefile, CompileObserver, KubefileBuild, KubefileError, KubefileInput};
