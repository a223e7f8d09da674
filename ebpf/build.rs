//! Rebuild when bpf-linker changes (it is the kernel programs' linker).
use which::which;

fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
