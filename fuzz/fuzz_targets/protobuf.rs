//! The hand-written protobuf of Envoy's `verify_signature` against prost,
//! the crate it saves the module from: whatever cnf-guard decodes, prost
//! decodes to the same result (cnf-guard may refuse more: groups), whatever
//! prost refuses cnf-guard refuses, and prost reads cnf-guard's arguments
//! back as they went in.

#![no_main]

use arbitrary::Arbitrary;
use cnf_guard::dpop::proof::protobuf::{verify_signature_arguments, verify_signature_result};
use libfuzzer_sys::fuzz_target;
use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    hash_function: String,
    #[prost(bytes = "vec", tag = "2")]
    public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    text: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    result: bool,
    #[prost(string, tag = "2")]
    error: String,
}

#[derive(Arbitrary, Debug)]
struct Input {
    answer: Vec<u8>,
    hash_function: String,
    public_key: Vec<u8>,
    signature: Vec<u8>,
    text: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let ours = verify_signature_result(&input.answer);
    match (ours, VerifySignatureResult::decode(input.answer.as_slice())) {
        (Some(ours), Ok(theirs)) => {
            assert_eq!((ours.result, ours.error), (theirs.result, theirs.error));
        }
        (Some(ours), Err(error)) => panic!("cnf-guard decoded {ours:?}, prost refused: {error}"),
        (None, _) => {}
    }
    let encoded = verify_signature_arguments(
        &input.hash_function,
        &input.public_key,
        &input.signature,
        &input.text,
    );
    let decoded = VerifySignatureArguments::decode(encoded.as_slice()).expect("prost reads it");
    assert_eq!(decoded.hash_function, input.hash_function);
    assert_eq!(decoded.public_key, input.public_key);
    assert_eq!(decoded.signature, input.signature);
    assert_eq!(decoded.text, input.text);
});
