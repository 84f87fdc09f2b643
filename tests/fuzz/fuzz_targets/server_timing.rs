//! `frontdoor::fuzzing::server_timing` under libFuzzer (see that function for the input and invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frontdoor::fuzzing::server_timing(data));
