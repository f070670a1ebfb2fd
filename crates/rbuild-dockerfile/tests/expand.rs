//! Word expansion checked against BuildKit's own expectations (shell/lex_test.go,
//! shell/envVarTest and shell/wordsTest in moby/buildkit).

use rbuild_dockerfile::{ExpandErrorKind, Expander};
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn word(vars: &HashMap<String, String>, s: &str) -> Result<String, String> {
    let lookup = |n: &str| vars.get(n).cloned();
    Expander::new(&lookup, '\\')
        .word(s)
        .map_err(|e| e.to_string())
}

fn words(vars: &HashMap<String, String>, s: &str) -> Result<Vec<String>, String> {
    let lookup = |n: &str| vars.get(n).cloned();
    Expander::new(&lookup, '\\')
        .words(s)
        .map_err(|e| e.to_string())
}

/// `None` means "must fail".
fn check(vars: &HashMap<String, String>, cases: &[(&str, Option<&str>)]) {
    let mut failures = Vec::new();
    for (input, want) in cases {
        let got = word(vars, input);
        let ok = match (want, &got) {
            (Some(w), Ok(g)) => w == g,
            (None, Err(_)) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn env_var_test_table() {
    let vars = env(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]);
    check(
        &vars,
        &[
            ("hello", Some("hello")),
            ("he'll'o", Some("hello")),
            ("he'llo", None),
            ("he\\'llo", Some("he'llo")),
            ("he\\\\'llo", None),
            ("abc\\tdef", Some("abctdef")),
            ("\"abc\\tdef\"", Some("abc\\tdef")),
            ("\"abc\\\\tdef\"", Some("abc\\tdef")),
            ("'abc\\tdef'", Some("abc\\tdef")),
            ("hello\\", Some("hello")),
            ("hello\\\\", Some("hello\\")),
            ("\"hello", None),
            ("\"hello\\\"", None),
            ("\"hel'lo\"", Some("hel'lo")),
            ("'hello", None),
            ("'hello\\'", Some("hello\\")),
            ("'hello\\there'", Some("hello\\there")),
            ("'hello\\\\there'", Some("hello\\\\there")),
            ("\"''\"", Some("''")),
            ("$.", Some("$.")),
            ("he$1x", Some("hex")),
            ("he$.x", Some("he$.x")),
            ("he$pwd.", Some("he.")),
            ("he$PWD", Some("he/home")),
            ("he\\$PWD", Some("he$PWD")),
            ("he\\\\$PWD", Some("he\\/home")),
            ("\"he\\$PWD\"", Some("he$PWD")),
            ("\"he\\\\$PWD\"", Some("he\\/home")),
            ("\\${}", Some("${}")),
            ("\\${}aaa", Some("${}aaa")),
            ("he\\${}", Some("he${}")),
            ("he\\${}xx", Some("he${}xx")),
            ("${}", None),
            ("${}xx", None),
            ("he${}", None),
            ("he${}xx", None),
            ("he${hi}", Some("he")),
            ("he${hi}xx", Some("hexx")),
            ("he${PWD}", Some("he/home")),
            ("he${.}", None),
            ("he${XXX:-000}xx", Some("he000xx")),
            ("he${PWD:-000}xx", Some("he/homexx")),
            ("he${XXX:-$PWD}xx", Some("he/homexx")),
            ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
            ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
            ("he${XXX:YYY}", None),
            ("he${XXX?}", None),
            ("he${XXX:?}", None),
            ("he${PWD?}", Some("he/home")),
            ("he${PWD:?}", Some("he/home")),
            ("he${NULL?}", Some("he")),
            ("he${NULL:?}", None),
            ("he${XXX:+${PWD}}xx", Some("hexx")),
            ("he${PWD:+${XXX}}xx", Some("hexx")),
            ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
            ("he${XXX:+000}xx", Some("hexx")),
            ("he${PWD:+000}xx", Some("he000xx")),
            ("'he${XX}'", Some("he${XX}")),
            ("\"he${PWD}\"", Some("he/home")),
            ("\"he'$PWD'\"", Some("he'/home'")),
            ("\"$PWD\"", Some("/home")),
            ("'$PWD'", Some("$PWD")),
            ("'\\$PWD'", Some("\\$PWD")),
            ("'\"hello\"'", Some("\"hello\"")),
            ("'he\\$PWD'", Some("he\\$PWD")),
            ("he${PWD", None),
            ("he${PWD=000}xx", None),
            ("he${PWD+000}xx", Some("he000xx")),
            ("he${PWD-000}xx", Some("he/homexx")),
            ("he${XXX=000}xx", None),
            ("he${XXX+000}xx", Some("hexx")),
            ("he${XXX-000}xx", Some("he000xx")),
            ("he${NULL=000}xx", None),
            ("he${NULL+000}xx", Some("he000xx")),
            ("he${NULL-000}xx", Some("hexx")),
            ("$KOREAN", Some("한국어")),
            ("안녕$KOREAN", Some("안녕한국어")),
            ("${{aaa}", None),
            ("${aaa}}", Some("}")),
            ("${aaa", None),
            ("${{aaa", None),
            ("${{aaa}}", None),
            ("${aaa}}}", Some("}}")),
        ],
    );
}

#[test]
fn process_with_matches_table() {
    let fb = env(&[("FOO", "xxx"), ("BAR", "")]);
    check(
        &fb,
        &[
            ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", Some("xxx  ccc")),
            ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", Some("xxx bbb ccc")),
            ("${FOO:-}", Some("xxx")),
            ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", Some("aaa bbb ")),
            ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", Some("aaa  ")),
            ("${FOO?aaa}", Some("xxx")),
            ("${BAR?bbb}", Some("")),
            ("${BAZ?ccc}", None),
            ("${FOO:?aaa}", Some("xxx")),
            ("${BAR:?bbb}", None),
            ("${BAZ:?ccc}", None),
            ("${BAZ:?}", None),
            ("${FOO=aaa}", None),
            ("${FOO=:aaa}", None),
        ],
    );
    check(&env(&[]), &[("${FOO:-}", Some("")), ("${FOO=}", None)]);
    let x = env(&[("FOO", "xxyy")]);
    check(
        &x,
        &[
            ("${FOO#*x*y}", Some("y")),
            ("${FOO#*}", Some("xxyy")),
            ("${FOO#}", Some("xxyy")),
            ("${FOO##*x}", Some("yy")),
            ("${FOO##}", Some("xxyy")),
            ("${ABC:-.}${FOO%x}${ABC:-.}", Some(".xxyy.")),
            ("${FOO%}", Some("xxyy")),
            ("${FOO//ww}", None),
            ("${FOO//}", None),
            ("${FOO///}", Some("xxyy")),
        ],
    );
    check(&env(&[]), &[("${FOO///}", Some(""))]);
    check(
        &env(&[("FOO", "()[]{}^$.*?|\\x")]),
        &[("${FOO#()[]{\\}^$.\\*\\?|\\\\}", Some("x"))],
    );
    check(&env(&[("FOO", "xx**")]), &[("${FOO%%\\**}", Some("xx"))]);
    check(
        &env(&[("FOO", "a***yy*")]),
        &[("${FOO%%\\**\\*}", Some("a"))],
    );
    check(&env(&[("FOO", "???y")]), &[("${FOO#?\\?}", Some("?y"))]);
    check(
        &env(&[("FOO", "xxyy"), ("BAR", "x")]),
        &[("${FOO#$BAR}", Some("xyy"))],
    );
    check(
        &env(&[("FOO", "xxyy"), ("BAR", "")]),
        &[
            ("${FOO#$BAR}", Some("xxyy")),
            ("${FOO%%$BAR}", Some("xxyy")),
            ("${FOO/$BAR/ww}", Some("wwxxyy")),
        ],
    );
    check(
        &env(&[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")]),
        &[(
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            Some("/foo.*/*.txt - /foo..*.txt"),
        )],
    );
    check(
        &env(&[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")]),
        &[(
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            Some("/tmp/bar.txt - /bar.txt"),
        )],
    );
    check(
        &env(&[
            ("FOO", "/a/foo/b/c.txt"),
            ("NEEDLE", "/?/"),
            ("REPLACEMENT", "/"),
        ]),
        &[(
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            Some("/foo/b/c.txt - /foo/c.txt"),
        )],
    );
    check(
        &env(&[
            ("FOO", "http://google.de"),
            ("NEEDLE", "http://"),
            ("REPLACEMENT", "https://"),
        ]),
        &[("${FOO/$NEEDLE/$REPLACEMENT}", Some("https://google.de"))],
    );
    check(
        &env(&[("FOO", "/tmp/foo.txt")]),
        &[("${FOO//\\//\\/}", Some("\\/tmp\\/foo.txt"))],
    );
}

#[test]
fn mandatory_messages() {
    let lookup_set = |n: &str| match n {
        "VAR" => Some("plain".to_string()),
        "ARG" => Some("x".to_string()),
        _ => None,
    };
    let lookup_empty = |n: &str| match n {
        "VAR" => Some(String::new()),
        "ARG" => Some("x".to_string()),
        _ => None,
    };
    let lookup_unset = |n: &str| (n == "ARG").then(|| "x".to_string());
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";
    let set = Expander::new(&lookup_set, '\\');
    let empty = Expander::new(&lookup_empty, '\\');
    let unset = Expander::new(&lookup_unset, '\\');
    assert_eq!(set.word(no_empty).unwrap(), "plain");
    let e = empty.word(no_empty).unwrap_err();
    assert_eq!(
        e.reason,
        ExpandErrorKind::Required {
            name: "VAR".into(),
            message: "message herex".into()
        }
    );
    assert!(
        unset
            .word(no_empty)
            .unwrap_err()
            .to_string()
            .contains("message herex")
    );
    assert_eq!(set.word(no_unset).unwrap(), "plain");
    assert_eq!(empty.word(no_unset).unwrap(), "");
    assert!(
        unset
            .word(no_unset)
            .unwrap_err()
            .to_string()
            .contains("message herex")
    );
    assert_eq!(
        unset.word("${VAR?}").unwrap_err().to_string(),
        "failed to process \"${VAR?}\": VAR: is not allowed to be unset"
    );
    assert_eq!(
        empty.word("${VAR:?}").unwrap_err().to_string(),
        "failed to process \"${VAR:?}\": VAR: is not allowed to be empty"
    );
}

#[test]
fn release_file_name_pattern() {
    let release =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let v7 = env(&[
        ("VERSION", "v1.2.3"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm"),
        ("TARGETVARIANT", "v7"),
    ]);
    assert_eq!(
        word(&v7, release).unwrap(),
        "something-v1.2.3.linux-arm-v7.tar.gz"
    );
    let empty = env(&[
        ("VERSION", "v1.2.3"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm64"),
        ("TARGETVARIANT", ""),
    ]);
    assert_eq!(
        word(&empty, release).unwrap(),
        "something-v1.2.3.linux-arm64.tar.gz"
    );
    let unset = env(&[
        ("VERSION", "v1.2.3"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm64"),
    ]);
    assert_eq!(
        word(&unset, release).unwrap(),
        "something-v1.2.3.linux-arm64.tar.gz"
    );
}

#[test]
fn words_test_table() {
    let vars = env(&[
        ("hi", "hi"),
        ("space", "abc  def"),
        ("leading", "  ab c"),
        ("trailing", "ab c   "),
    ]);
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("hello", Some(&["hello"])),
        ("hello${hi}bye", Some(&["hellohibye"])),
        ("hello${space}bye", Some(&["helloabc", "defbye"])),
        ("hello\"${space}\"bye", Some(&["helloabc  defbye"])),
        ("hello \"${space}\"bye", Some(&["hello", "abc  defbye"])),
        ("hello${leading}def", Some(&["hello", "ab", "cdef"])),
        ("hello\"${leading}\" def", Some(&["hello  ab c", "def"])),
        ("hello\"${leading}\"", Some(&["hello  ab c"])),
        ("hello${leading}", Some(&["hello", "ab", "c"])),
        ("hello${trailing}", Some(&["helloab", "c"])),
        ("hello${trailing}d", Some(&["helloab", "c", "d"])),
        ("hello\"${trailing}\"d", Some(&["helloab c   d"])),
        ("hel\"lo${trailing}\"", Some(&["helloab c   "])),
        ("hello\" there  \"", Some(&["hello there  "])),
        ("hello there     ", Some(&["hello", "there"])),
        ("hello\\ there", Some(&["hello there"])),
        ("hello\" there", None),
        ("hello\\\" there", Some(&["hello\"", "there"])),
        ("hello\"\\\\there\"", Some(&["hello\\there"])),
        ("hello\"\\there\"", Some(&["hello\\there"])),
        ("hello'\\\\there'", Some(&["hello\\\\there"])),
        ("hello'\\there'", Some(&["hello\\there"])),
        ("hello'$there'", Some(&["hello$there"])),
        ("\"\" a", Some(&["a"])),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        let got = words(&vars, input);
        let ok = match (want, &got) {
            (Some(w), Ok(g)) => w.iter().map(|s| s.to_string()).collect::<Vec<_>>() == *g,
            (None, Err(_)) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn dollar_at_end_and_unicode() {
    let vars = env(&[("név", "érték"), ("A", "ü")]);
    check(
        &vars,
        &[
            ("price: 5$", Some("price: 5$")),
            ("$", Some("$")),
            ("\"$\"", Some("$")),
            ("${név}-$név", Some("érték-érték")),
            ("${A}${A:+ö}", Some("üö")),
            ("${A/ü/ß}", Some("ß")),
        ],
    );
}

#[test]
fn backtick_escape() {
    let vars = env(&[("X", "1")]);
    let lookup = |n: &str| vars.get(n).cloned();
    let e = Expander::new(&lookup, '`');
    assert_eq!(e.word("c:\\dir\\$X").unwrap(), "c:\\dir\\1");
    assert_eq!(e.word("`$X").unwrap(), "$X");
    assert_eq!(e.words("a` b c").unwrap(), vec!["a b", "c"]);
    assert_eq!(e.word("\"`\"\"").unwrap(), "\"");
}

#[test]
fn special_parameters_and_names() {
    let vars = env(&[("@", "at"), ("1", "one"), ("12", "twelve"), ("_x1", "u")]);
    check(
        &vars,
        &[
            ("$@", Some("at")),
            ("$1", Some("one")),
            ("$12", Some("twelve")),
            ("$_x1-", Some("u-")),
            ("${_x1}", Some("u")),
        ],
    );
}

#[test]
fn used_names_in_order() {
    let vars = env(&[("A", "1")]);
    let lookup = |n: &str| vars.get(n).cloned();
    let e = Expander::new(&lookup, '\\');
    assert_eq!(
        e.used_names("$B ${A:-$C} $B '$D'").unwrap(),
        vec!["B", "C", "A"]
    );
    let x = e.expand("${A} $Z").unwrap();
    assert_eq!(x.matched, vec!["A"]);
    assert_eq!(x.unmatched, vec!["Z"]);
}

#[test]
fn skip_unset_and_skip_quotes() {
    let vars = env(&[("A", "1")]);
    let lookup = |n: &str| vars.get(n).cloned();
    let e = Expander::new(&lookup, '\\').skip_unset(true);
    assert_eq!(e.word("$A $B ${C} ${D:-x}").unwrap(), "1 $B ${C} ${D:-x}");
    let h = Expander::new(&lookup, '\\').skip_quotes(true);
    assert_eq!(h.word("echo \"$A\" '$A'\n").unwrap(), "echo \"1\" '1'\n");
}

#[test]
fn error_messages() {
    let none = env(&[]);
    assert_eq!(
        word(&none, "${a").unwrap_err(),
        "failed to process \"${a\": syntax error: missing '}'"
    );
    assert_eq!(
        word(&none, "${}").unwrap_err(),
        "failed to process \"${}\": syntax error: bad substitution"
    );
    assert_eq!(
        word(&none, "'x").unwrap_err(),
        "failed to process \"'x\": unexpected end of statement while looking for matching single-quote"
    );
    assert_eq!(
        word(&none, "${a=b}").unwrap_err(),
        "failed to process \"${a=b}\": unsupported modifier (=) in substitution"
    );
    assert_eq!(
        word(&env(&[("a", "x")]), "${a#\\x}").unwrap_err(),
        "failed to process \"${a#\\\\x}\": invalid pattern (\\x) in substitution: invalid escape '\\x'"
    );
    assert_eq!(
        word(&none, "${a/x").unwrap_err(),
        "failed to process \"${a/x\": syntax error: missing '/' in ${}"
    );
}

/// Random operator soup must give a value or an error, never a panic.
#[test]
fn random_words_never_panic() {
    let pieces = [
        "$", "{", "}", "${", "A", "B", ":", "-", "+", "?", "#", "%", "/", "//", "\\", "'", "\"",
        "*", "é", " ", "\n", "`", "0", "@",
    ];
    let vars = env(&[("A", "a*b/c d"), ("B", "")]);
    let lookup = |n: &str| vars.get(n).cloned();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..5000 {
        let mut s = String::new();
        for _ in 0..(seed % 16) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        seed = seed.wrapping_add(0x9e37_79b9);
        for escape in ['\\', '`'] {
            let e = Expander::new(&lookup, escape);
            let _ = e.word(&s);
            let _ = e.words(&s);
        }
    }
}
