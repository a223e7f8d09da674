//! The link types the `frames` target picks from with its first byte (and the seed maker
//! writes that byte for).

use peerwarden_classifier::capture::link;

pub const LINK_TYPES: [u32; 8] = [
    link::ETHERNET,
    link::RAW,
    link::LINUX_SLL,
    link::LINUX_SLL2,
    link::NULL,
    link::LOOP,
    link::PPP,
    link::C_HDLC,
];
