//! The XFCC grammar on arbitrary bytes. Beyond "no panic": appending one more
//! element to a header that parses always yields that element, because the
//! last element is what cnf-guard trusts.
#![no_main]

use cnf_guard::certificate::xfcc::{last_element, XfccElement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if last_element(data).is_ok() {
        let mut appended = data.to_vec();
        appended.extend_from_slice(b",Hash=ab;Cert=\"x,y;z\"");
        assert_eq!(
            last_element(&appended),
            Ok(XfccElement {
                hash: Some("ab".to_owned()),
                cert: Some("x,y;z".to_owned()),
            })
        );
    }
});
