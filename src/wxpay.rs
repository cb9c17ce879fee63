//! WeChat Pay API v2, the protocol side. `xml`, `sign`, `reply` and `time` are pure functions
//! over bytes and maps (known-answer tests from SPEC §9); `client` is the only part with I/O.

pub mod client;
pub mod reply;
pub mod sign;
pub mod time;
pub mod xml;

pub use xml::Fields;
