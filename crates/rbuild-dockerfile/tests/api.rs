//! Properties of the syntax tree the golden dump does not show: spans, flag values,
//! original text, long lines, invalid UTF-8 and the error type.

use rbuild_dockerfile::{Args, Keyword, Severity, Span, parse};

fn span(line: usize, col: usize, end_line: usize) -> Span {
    Span {
        line,
        col,
        end_line,
    }
}

#[test]
fn instruction_and_flag_spans() {
    let src = "FROM alpine\n  COPY --from=build \\\n    --chown=1:1 a b\nRUN <<EOF\nx\nEOF\n";
    let df = parse("Dockerfile", src.as_bytes()).unwrap();
    let copy = &df.instructions[1];
    assert_eq!(copy.keyword, Keyword::Copy);
    assert_eq!(copy.span, span(2, 3, 3));
    assert_eq!(copy.flags[0].name, "from");
    assert_eq!(copy.flags[0].value.as_deref(), Some("build"));
    assert_eq!(copy.flags[0].span, span(2, 8, 2));
    assert_eq!(copy.flags[1].span, span(3, 5, 3));
    assert_eq!(
        copy.flag("chown").and_then(|f| f.value.as_deref()),
        Some("1:1")
    );
    assert_eq!(copy.original, "COPY --from=build     --chown=1:1 a b");
    let run = &df.instructions[2];
    assert_eq!(run.span, span(4, 1, 6));
    assert_eq!(run.heredocs[0].content, "x\n");
}

#[test]
fn keyword_text_is_kept() {
    let df = parse("Dockerfile", b"from alpine\nrUn true\n").unwrap();
    assert_eq!(df.instructions[1].keyword_text, "rUn");
    assert_eq!(df.instructions[1].keyword.as_str(), "run");
    assert_eq!(df.instructions[1].keyword.to_string(), "RUN");
}

#[test]
fn onbuild_trigger_is_parsed_with_its_own_span() {
    let src = "FROM a\nONBUILD   COPY --chmod=644 <<EOF /f\nhi\nEOF\n";
    let df = parse("Dockerfile", src.as_bytes()).unwrap();
    let Args::Onbuild(inner) = &df.instructions[1].args else {
        panic!("not onbuild: {:?}", df.instructions[1].args);
    };
    assert_eq!(inner.keyword, Keyword::Copy);
    assert_eq!(inner.span, span(2, 11, 4));
    assert_eq!(inner.original, "COPY --chmod=644 <<EOF /f");
    assert_eq!(inner.heredocs[0].content, "hi\n");
    assert_eq!(df.instructions[1].span, span(2, 1, 4));
}

#[test]
fn healthcheck_args_shape() {
    let df = parse(
        "Dockerfile",
        b"FROM a\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"x\"]\nHEALTHCHECK CMD x y\n",
    )
    .unwrap();
    assert_eq!(df.instructions[1].args, Args::Healthcheck(None));
    assert_eq!(
        df.instructions[2].args,
        Args::Healthcheck(Some(Box::new(Args::Exec(vec!["x".into()]))))
    );
    assert_eq!(
        df.instructions[3].args,
        Args::Healthcheck(Some(Box::new(Args::Shell("x y".into()))))
    );
}

#[test]
fn lines_longer_than_64k() {
    let long = "x".repeat(100 * 1024);
    let src = format!("FROM a\nRUN echo {long} \\\n  {long}\nENV A={long}\n");
    let df = parse("Dockerfile", src.as_bytes()).unwrap();
    let Args::Shell(run) = &df.instructions[1].args else {
        panic!("not shell form");
    };
    assert_eq!(run.len(), 5 + long.len() + 3 + long.len());
    assert_eq!(
        df.instructions[2].args,
        Args::Pairs(vec![("A".into(), long.clone())])
    );
}

#[test]
fn invalid_utf8_is_a_warning() {
    let df = parse("Dockerfile", b"FROM a\nRUN echo \xff\xfe\n").unwrap();
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].severity, Severity::Warning);
    assert_eq!(df.warnings[0].span.line, 2);
    assert_eq!(
        df.instructions[1].args,
        Args::Shell("echo \u{fffd}\u{fffd}".into())
    );
}

#[test]
fn errors_are_collected_and_render() {
    let err = parse("build/Dockerfile", b"FORM a\nRUN\nCOPY x\n").unwrap_err();
    assert_eq!(err.0.len(), 3);
    assert!(err.0.iter().all(|d| d.is_error()));
    assert_eq!(err.0[0].help.as_deref(), Some("did you mean FROM?"));
    let text = err.to_string();
    assert!(text.starts_with(
        "build/Dockerfile:1:1: unknown instruction: FORM\n  1 | FORM a\n    | ^^^^\n"
    ));
    assert!(text.contains("build/Dockerfile:2:1: RUN requires at least one argument"));
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert!(
        boxed
            .to_string()
            .contains("COPY requires at least two arguments")
    );
}

#[test]
fn escape_directive_changes_word_splitting() {
    let df = parse("Dockerfile", b"# escape=`\nFROM a\nARG A=x` y\n").unwrap();
    assert_eq!(df.directives.escape, '`');
    assert_eq!(df.instructions[1].args, Args::Words(vec!["A=x` y".into()]));
}

#[test]
fn heredoc_terminator_on_last_line_without_newline() {
    let df = parse("Dockerfile", b"FROM a\nRUN <<EOF\nhi\nEOF").unwrap();
    assert_eq!(df.instructions[1].heredocs[0].content, "hi\n");
    assert_eq!(df.instructions[1].span.end_line, 4);
}

/// Random mixes of the tricky pieces of the syntax must never panic, and every
/// diagnostic must point inside the file.
#[test]
fn random_input_never_panics() {
    let pieces: &[&[u8]] = &[
        b"FROM a",
        b"RUN",
        b" ",
        b"\t",
        b"\n",
        b"\r\n",
        b"\\",
        b"`",
        b"# escape=`",
        b"#",
        b"<<EOF",
        b"<<-'X'",
        b"EOF",
        b"X",
        b"\"",
        b"'",
        b"[\"a\", 1]",
        b"[",
        b"]",
        b"--f=",
        b"--",
        b"ENV",
        b"A=b",
        b"=",
        b"ONBUILD",
        b"HEALTHCHECK",
        b"CMD",
        b"NONE",
        b"COPY",
        b"\xc3\xa9",
        b"\xff",
        b"\xef\xbb\xbf",
        b"$",
        b"${",
        b"}",
        b"\t\tEOF",
        b"SHELL",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let len = (next() % 40) as usize;
        let mut src = Vec::new();
        for _ in 0..len {
            src.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let lines = src.split(|b| *b == b'\n').count();
        let diags = match parse("Dockerfile", &src) {
            Ok(df) => {
                for i in &df.instructions {
                    assert!(i.span.line >= 1 && i.span.line <= i.span.end_line);
                    assert!(i.span.end_line <= lines);
                }
                df.warnings
            }
            Err(e) => e.0,
        };
        for d in diags {
            assert!(d.span.line >= 1 && d.span.line <= lines.max(1), "{d}");
            assert!(d.width >= 1);
            let _ = d.to_string();
        }
    }
}
