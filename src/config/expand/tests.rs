use super::*;
use std::collections::HashMap;

fn table(pairs: &[(&str, &str)]) -> HashMap<Vec<u8>, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn run(pattern: &str, pairs: &[(&str, &str)]) -> Result<String, String> {
    let map = table(pairs);
    let lookup = move |name: &[u8]| map.get(name).cloned();
    expand(pattern.as_bytes(), &lookup, true)
        .map(|e| String::from_utf8(e.value).unwrap())
        .map_err(|e| e.to_string())
}

fn ok(pattern: &str, pairs: &[(&str, &str)]) -> String {
    run(pattern, pairs).unwrap()
}

const VARS: &[(&str, &str)] = &[
    ("name", "Postfix"),
    ("empty", ""),
    ("host", "mail.$domain"),
    ("domain", "example.com"),
    ("compatibility_level", "3.6"),
    ("self", "x$self"),
    ("money", "a$$b"),
];

#[test]
fn plain_forms() {
    assert_eq!(ok("$name ${name} $(name)", VARS), "Postfix Postfix Postfix");
    assert_eq!(ok("a$$b $$name", VARS), "a$b $name");
    assert_eq!(ok("<$nosuch>${nosuch}", VARS), "<>");
    assert_eq!(ok("$name.x/$name-y", VARS), "Postfix.x/Postfix-y");
}

#[test]
fn recursive_and_once() {
    assert_eq!(ok("$host", VARS), "mail.example.com");
    assert_eq!(ok("$money", VARS), "a$b");
    let map = table(VARS);
    let lookup = move |name: &[u8]| map.get(name).cloned();
    let once = expand(b"$host", &lookup, false).unwrap();
    assert_eq!(once.value, b"mail.$domain");
}

#[test]
fn undefined_is_flagged_not_an_error() {
    let lookup = |_: &[u8]| None;
    let got = expand(b"a$b", &lookup, true).unwrap();
    assert_eq!(got.value, b"a");
    assert!(got.saw_undefined);
}

#[test]
fn conditional_forms() {
    assert_eq!(ok("${name?yes}|${empty?yes}|${nosuch?yes}", VARS), "yes||");
    assert_eq!(ok("${name:no}|${empty:no}|${nosuch:no}", VARS), "|no|no");
    assert_eq!(ok("${name?$domain}", VARS), "example.com");
    assert_eq!(ok("${name?{T}:{F}}${empty ? { T } : { F }}", VARS), "T F ");
    // Postfix 2.x compatibility: without braces the rest is plain text.
    assert_eq!(ok("${name??foo:{b}ar}", VARS), "?foo:{b}ar");
}

#[test]
fn relational_forms() {
    assert_eq!(ok("${{10} > {9}}", VARS), "true");
    assert_eq!(ok("${{10} < {9}}", VARS), "");
    assert_eq!(ok("${{abc} < {abd}}", VARS), "true");
    assert_eq!(ok("${{10} < {9x}}", VARS), "true");
    assert_eq!(
        ok("${{$name} == {Postfix} ? {same} : {differs}}", VARS),
        "same"
    );
    assert_eq!(ok("${{a}!={a}?{t}:{f}}", VARS), "f");
    assert_eq!(ok("${{1}<={1}}${{2}>={3}}", VARS), "true");
    assert_eq!(ok("${{x} == {y} : {no}}", VARS), "no");
    assert_eq!(ok("$({a} == {a})", VARS), "true");
}

#[test]
fn level_operators() {
    assert_eq!(
        ok("${{$compatibility_level} <level {2} ? {old} : {new}}", VARS),
        "new"
    );
    assert_eq!(ok("${{3.6} ==level {3.6.0}}", VARS), "true");
    assert_eq!(ok("${{3.10} >level {3.9}}", VARS), "true");
    assert_eq!(ok("${{2} <level {3.6}}", VARS), "true");
    assert_eq!(ok("${{0} <level {1} ? {no} : {yes}}", VARS), "no");
    assert_eq!(
        run("${{x} <level {1}}", VARS).unwrap_err(),
        "malformed compatibility level syntax: \"x\""
    );
    assert_eq!(
        run("${{1} <size {1}}", VARS).unwrap_err(),
        "bad operator suffix at: \"...<>>>size\""
    );
}

#[test]
fn compatibility_level_encoding() {
    assert_eq!(compatibility_level(b"0"), Some(0));
    assert_eq!(compatibility_level(b"3.6"), Some((3 << 20) | (6 << 10)));
    assert_eq!(
        compatibility_level(b"3.6.1"),
        Some((3 << 20) | (6 << 10) | 1)
    );
    assert_eq!(compatibility_level(b"3.1024"), None);
    assert_eq!(compatibility_level(b"3."), None);
    assert_eq!(compatibility_level(b"-1"), None);
    assert_eq!(compatibility_level(b""), None);
    assert_eq!(compatibility_level(b"3.6.1.2"), None);
}

#[test]
fn syntax_errors_have_postfix_wording() {
    let cases = [
        ("${name", "truncated macro reference: \"${name\""),
        ("a $ b", "empty macro name: \"a $ b\""),
        ("a$", "empty macro name: \"a$\""),
        ("${na me}", "attribute name syntax error at: \"...na>>> me\""),
        ("${{a} {b}}", "\"==\" or \"!=\"\" or \"<\"\" or \"<=\"\" or \">=\"\" or \">\" expected at: \"...a}>>>{b}\""),
        ("${{a} == b}", "\"{expression}\" expected at: \"...{a} ==>>> b\""),
        ("${{a} == {b} x}", "\"?\" or \":\" expected at: \"...}>>>x\""),
        ("${name?{a} x}", "\":\" expected at: \"...a}>>>x\""),
        ("${name?{a}:{b} x}", "unexpected input at: \"...b}>>>x\""),
        ("${{a} == {b}", "truncated macro reference: \"${{a} == {b}\""),
        ("${{a == {b}}", "truncated macro reference: \"${{a == {b}}\""),
        ("$({a == b)", "unbalanced {} in attribute expression: \"{a == b\""),
        ("$self", "unreasonable macro call nesting: \"x\""),
        ("${{99999999999999999999} == {1}}", "mac_exp_eval: bad conversion: 99999999999999999999"),
    ];
    for (pattern, want) in cases {
        assert_eq!(run(pattern, VARS).unwrap_err(), want, "pattern {pattern}");
    }
}

#[test]
fn fatal_message() {
    let err = run("$", VARS);
    assert!(err.is_err());
    let e = ExpandError::EmptyName {
        value: b"$".to_vec(),
    };
    assert_eq!(
        e.fatal_message(),
        Some("dictionary mail_dict: macro processing error")
    );
}

#[test]
fn exponential_expansion_is_cut_off() {
    let got = run("$a", &[("a", "$b$b"), ("b", "$a$a")]);
    assert!(got
        .unwrap_err()
        .starts_with("unreasonable macro call nesting"));
}

#[test]
fn self_reference_through_relational_operand_is_caught() {
    let got = run("$loop", &[("loop", "${{$loop} == {x}}")]);
    assert!(got
        .unwrap_err()
        .starts_with("unreasonable macro call nesting"));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let map = table(VARS);
        let lookup = move |name: &[u8]| map.get(name).cloned();
        let _ = expand(&input, &lookup, true);
    }

    #[test]
    fn macro_soup_never_panics(input in "[${}()?:=<>!a-c0-9 ]{0,80}", value in "[${}()?:=<>!a-c0-9 ]{0,40}") {
        let map = table(&[("a", value.as_str()), ("b", "$a$a"), ("c", "")]);
        let lookup = move |name: &[u8]| map.get(name).cloned();
        let _ = expand(input.as_bytes(), &lookup, true);
    }
}
