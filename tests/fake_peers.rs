//! Tests of the fake Postfix world itself (tests/common): each fake speaks the bytes a real
//! Postfix peer sends, and FakeMaster hands a child master(8)'s descriptors.

mod common;

#[test]
fn placeholder() {}
