//! Link flags of the package's executables: the image's link, opt-in (`IRSA_IMAGE_LINK=1`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=IRSA_IMAGE_LINK");
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("IRSA_IMAGE_LINK") != "1"
        || var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
    {
        return;
    }
    // DT_RELR: the position-independent executable's ~56k relative relocations, which the
    // dynamic loader reads at every start, packed from 24 bytes each (1.3 MB of `.rela.dyn`,
    // all of it resident in every process) into a bitmap of 16 KB. Opt-in, because the result
    // needs glibc 2.36 where it runs, whatever the glibc it was built against: the image's
    // build (distroless Debian 12) and the benchmarks set it. Linkers that do not know the
    // flag ignore it.
    println!("cargo:rustc-link-arg=-Wl,-z,pack-relative-relocs");
    // The functions `irsa webhook` runs, first and together (scripts/hot-symbols.sh). Without
    // this the linker interleaves them with the controller's and the doctor's code, and the
    // kernel, which maps an executable's pages 64 KiB at a time around each one touched, keeps
    // about 12 MiB of code resident for 2 MiB that runs. Only the `irsa` binary's list, so
    // only bins; only x86_64, where rustc links with its own lld, which reads the list
    // (symbols missing from it, after code changes, are laid out as before).
    if var("CARGO_CFG_TARGET_ARCH") == "x86_64" {
        let list = format!("{}/link/hot-symbols.txt", var("CARGO_MANIFEST_DIR"));
        println!("cargo:rerun-if-changed={list}");
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={list}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
