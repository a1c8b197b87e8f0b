//! A Kubefile to an image in one call: compile it with the store's file-digest cache, save
//! that cache, and execute the plan; a problem of the Kubefile only the build can see (the
//! base image's type, KF241) comes back as a diagnostic like the compiler's.
//!
//! This is the sequence `chasi build` runs; keeping it here leaves the CLI to read its
//! arguments and print, and lets other front ends build a Kubefile the same way.

use crate::events::BuildObserver;
use crate::exec::{build, BuildOptions, BuildOutput};
use crate::filecache::StoreFileDigests;
use crate::BuildError;
use chasi_compiler::check::{sort_diagnostics, ContextError, ImageType};
use chasi_compiler::diagnostics::Diagnostic;
use chasi_compiler::source::SourceFile;
use chasi_compiler::{compile_bytes, CompileOptions, Compiled};
use chasi_layers::Store;
use chasi_oci::Platform;
use std::collections::BTreeMap;

/// The Kubefile to build (its build context is [`BuildOptions::context`]).
#[derive(Debug, Clone)]
pub struct KubefileInput<'a> {
    /// The name diagnostics give the file (a path, or `-` for standard input).
    pub name: String,
    /// Its raw bytes (invalid UTF-8 is a diagnostic).
    pub bytes: &'a [u8],
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// Target platforms; empty means the host's.
    pub platforms: Vec<Platform>,
    /// `--type`: a cluster image (the default) or an application image.
    pub image_type: ImageType,
}

/// Hears what happens before the build starts.
pub trait CompileObserver {
    /// The Kubefile was compiled (called once, before anything is built, diagnostics or not).
    fn compiled(&self, source: &SourceFile, compiled: &Compiled);
    /// A problem that does not stop the build (the file-digest cache could not be saved).
    fn warning(&self, message: &str);
    /// Diagnostics only the build could find (the base image's type does not fit `--type`):
    /// the build stopped and tagged nothing. Called at most once, after [`Self::compiled`].
    fn refused(&self, source: &SourceFile, diagnostics: &[Diagnostic]);
}

/// How a Kubefile build ended, short of an error.
#[derive(Debug)]
pub enum KubefileBuild {
    /// The Kubefile has errors (in `compiled.diagnostics`): nothing was tagged. Usually the
    /// compiler found them and nothing was built; an error only the build can find (KF241)
    /// stops it at the final stage's base.
    Rejected {
        /// The source the diagnostics refer to.
        source: SourceFile,
        /// The compiler's result.
        compiled: Box<Compiled>,
    },
    /// The image was built and tagged.
    Built(BuildOutput),
}

/// Why a Kubefile build failed.
#[derive(Debug, thiserror::Error)]
pub enum KubefileError {
    /// The build context could not be read to compile the Kubefile.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The compiler reported no error but made no plan (a compiler bug).
    #[error("the Kubefile compiled without errors but produced no plan")]
    NoPlan,
    /// Executing the plan failed.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Compiles the Kubefile against `opts.context` (unchanged files are not read again: their
/// digests come from the store), saves the digest cache, and builds the plan.
pub fn build_kubefile(
    store: &Store,
    input: &KubefileInput<'_>,
    opts: &BuildOptions,
    compile: &dyn CompileObserver,
    observer: &dyn BuildObserver,
) -> Result<KubefileBuild, KubefileError> {
    let file_digests = StoreFileDigests::load(store, &opts.context);
    let options = CompileOptions {
        context: Some(&opts.context),
        build_args: input.build_args.clone(),
        platforms: input.platforms.clone(),
        image_type: input.image_type,
        skip_plan: false,
        file_digests: Some(&file_digests),
    };
    let (source, compiled) = compile_bytes(input.name.clone(), input.bytes, &options)?;
    compile.compiled(&source, &compiled);
    if compiled.has_errors() {
        return Ok(KubefileBuild::Rejected {
            source,
            compiled: Box::new(compiled),
        });
    }
    let plan = compiled.plan.as_ref().ok_or(KubefileError::NoPlan)?;
    if let Err(e) = file_digests.save(store) {
        compile.warning(&chasi_layers::error::chain(&e));
    }
    match build(store, plan, opts, observer) {
        Ok(output) => Ok(KubefileBuild::Built(output)),
        Err(BuildError::ImageType { diagnostic, .. }) => {
            compile.refused(&source, std::slice::from_ref(&*diagnostic));
            let mut compiled = compiled;
            compiled.diagnostics.push(*diagnostic);
            sort_diagnostics(&mut compiled.diagnostics);
            Ok(KubefileBuild::Rejected {
                source,
                compiled: Box::new(compiled),
            })
        }
        Err(e) => Err(e.into()),
    }
}
