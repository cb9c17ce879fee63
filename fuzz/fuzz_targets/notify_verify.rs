#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paynotify_fuzz::notify_verify(data));
