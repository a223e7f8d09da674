fn main() {
    let obj = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/peerwarden"));
    let mut ebpf = aya::Ebpf::load(obj).expect("load");
    for name in ["xdp_downlink", "xdp_uplink", "xdp_pass"] {
        let p: &mut aya::programs::Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    println!("loaded");
}
