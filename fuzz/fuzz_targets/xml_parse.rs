#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paynotify_fuzz::xml_parse(data));
