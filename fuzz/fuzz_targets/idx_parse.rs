//! Any bytes, gzip'd or not, given to the IDX parser: it may return an error but must never panic, and
//! must never allocate more than the limit allows for the data.
#![no_main]

use bp_data::{Compression, IdxArray, Limits, read_idx_from};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small limit keeps each run fast and makes the limit checks reachable.
    let limits = Limits { max_bytes: 1 << 20 };
    if let Ok(idx) = read_idx_from(data, "fuzz input", &limits) {
        // Whatever parses must write back to a file that parses to the same array.
        let mut bytes = Vec::new();
        idx.write_to(&mut bytes, "fuzz output", Compression::None)
            .expect("a parsed array can be written");
        let again: IdxArray =
            read_idx_from(&bytes[..], "fuzz output", &limits).expect("written IDX reads back");
        assert_eq!(again.elem_type(), idx.elem_type());
        assert_eq!(again.shape(), idx.shape());
    }
});
