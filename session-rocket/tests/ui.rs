//! Mistakes the type system stops through this adapter: see `tests/ui/*.rs`
//! and their expected compiler errors.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
