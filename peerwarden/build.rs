//! Builds the kernel programs (ebpf/) for the bpf target with Debian's rustc, which has the
//! library source build-std needs, through the rustup toolchain `debian` that
//! scripts/setup.sh links. `AYA_BUILD_SKIP=1` skips it for host-only checks.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // build-std needs unstable flags; allow them for this build only.
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?
        .join("ebpf");
    let root = root.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [Package {
            name: "peerwarden-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Custom("debian"),
    )
    .context("building the kernel programs (run scripts/setup.sh first)")
}
