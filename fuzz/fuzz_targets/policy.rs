//! The policy loader (`peerwarden policy check`, the daemon's policy file, the API's policy
//! PUT) on arbitrary text: YAML parsing with its node budget, then validation. It must answer
//! with a policy or with errors, and every error must name a place inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|p: &[u8]| {
    let Ok(src) = std::str::from_utf8(p) else {
        return;
    };
    if let Err(errors) = peerwarden_policies::load_str(src, "<fuzz>") {
        assert!(!errors.errors().is_empty(), "a refusal without an error");
        // Lines are 1-based and end where YAML says they do (LF, CR or CRLF: a lone CR is a
        // line break too); the line after the last is where "unexpected end" points.
        let lines = src.replace("\r\n", "\n").split(['\n', '\r']).count() as u32;
        for e in errors.errors() {
            assert!(
                e.line <= lines + 1,
                "error at line {} of a {lines}-line text: {}",
                e.line,
                e.message
            );
        }
    }
});
