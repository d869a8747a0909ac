//! The head guard (bare LF / CR and double framing in HTTP/1.1 heads) on any client byte stream,
//! cut into reads of any size: never a panic, the same verdict however the stream is cut, and a
//! refusal changes exactly the one byte that refuses (the checks are in
//! `invoiceguard_gateway::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8])| {
    let (piece, stream) = input;
    let _ = invoiceguard_gateway::fuzzing::head_guard(stream, usize::from(piece).max(1));
});
