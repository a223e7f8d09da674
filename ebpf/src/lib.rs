//! The kernel crate's library target is empty: `peerwarden`'s build.rs depends on it so that
//! cargo rebuilds the daemon when the kernel code changes. The programs are the `peerwarden`
//! binary target, built for `bpfel-unknown-none` by aya-build.
#![no_std]
