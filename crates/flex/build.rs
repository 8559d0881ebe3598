//! `cfg(x86_kernels)`: the AVX-512 kernels are compiled — an x86-64 target with the
//! `x86-kernels` feature on. One name instead of the two conditions at every use.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(x86_kernels)");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    if x86_64 && std::env::var_os("CARGO_FEATURE_X86_KERNELS").is_some() {
        println!("cargo::rustc-cfg=x86_kernels");
    }
}
