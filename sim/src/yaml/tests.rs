use super::de::{from_node, Mode};
use super::*;
use std::collections::BTreeMap;

fn one(text: &str) -> Node {
    parse_one(text).expect("parses").expect("not empty")
}

fn scalar(text: &str) -> Scalar {
    Scalar {
        text: text.into(),
        style: Style::Plain,
        tag: None,
    }
}

#[test]
fn yaml11_resolution_follows_go_yaml_v2() {
    let r = |t: &str| format!("{:?}", scalar(t).resolve(Schema::Yaml11));
    for t in ["y", "Y", "yes", "on", "ON", "true", "True"] {
        assert_eq!(r(t), format!("{:?}", Resolved::Bool(true)), "{t}");
    }
    for t in ["n", "no", "Off", "false"] {
        assert_eq!(r(t), format!("{:?}", Resolved::Bool(false)), "{t}");
    }
    assert_eq!(r("~"), format!("{:?}", Resolved::Null));
    assert_eq!(r("80"), format!("{:?}", Resolved::Int(80)));
    assert_eq!(r("-3"), format!("{:?}", Resolved::Int(-3)));
    assert_eq!(r("0x1F"), format!("{:?}", Resolved::Int(31)));
    assert_eq!(r("0777"), format!("{:?}", Resolved::Int(511)));
    assert_eq!(r("1_000"), format!("{:?}", Resolved::Int(1000)));
    // "0080" is not octal; go-yaml then reads it as a float.
    assert_eq!(r("0080"), format!("{:?}", Resolved::Float(80.0)));
    assert_eq!(r("1.5"), format!("{:?}", Resolved::Float(1.5)));
    assert_eq!(r(".5"), format!("{:?}", Resolved::Float(0.5)));
    assert_eq!(r("1e3"), format!("{:?}", Resolved::Float(1000.0)));
    for t in [
        "2001-12-14",
        "10.0.0.1",
        "80/TCP",
        "x",
        "a1",
        "1a",
        "-",
        "+.x",
    ] {
        assert_eq!(r(t), format!("{:?}", Resolved::Str(t)), "{t}");
    }
    let core = |t: &str| format!("{:?}", scalar(t).resolve(Schema::Core));
    assert_eq!(core("y"), format!("{:?}", Resolved::Str("y")));
    assert_eq!(core("yes"), format!("{:?}", Resolved::Str("yes")));
    assert_eq!(core("true"), format!("{:?}", Resolved::Bool(true)));
    assert_eq!(core("80"), format!("{:?}", Resolved::Int(80)));
    let quoted = Scalar {
        style: Style::DoubleQuoted,
        ..scalar("80")
    };
    assert_eq!(quoted.resolve(Schema::Yaml11), Resolved::Str("80"));
    let tagged = Scalar {
        tag: Some("!!str".into()),
        ..scalar("yes")
    };
    assert_eq!(tagged.resolve(Schema::Yaml11), Resolved::Str("yes"));
}

#[test]
fn marks_are_one_based_and_absolute() {
    let docs = parse_stream("a: 1\n---\nb:\n  c: [x, 'y']\n").unwrap();
    assert_eq!(docs.len(), 2);
    let d = docs[1].root.as_ref().unwrap();
    assert_eq!(docs[1].index, 2);
    let c = d.at_path("b.c").unwrap();
    assert_eq!(c.mark, Mark { line: 4, column: 6 });
    assert_eq!(
        d.at_path("b.c[1]").unwrap().mark,
        Mark {
            line: 4,
            column: 10
        }
    );
    assert_eq!(d.at_path("b.c[1]").unwrap().as_str(), Some("y"));
}

#[test]
fn empty_documents_have_no_root() {
    let docs = parse_stream("---\n# only a comment\n---\n~\n---\na: 1\n").unwrap();
    let roots: Vec<bool> = docs.iter().map(|d| d.root.is_some()).collect();
    assert_eq!(roots, vec![false, false, true]);
    assert!(parse_stream("").unwrap().is_empty());
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let n = one(
        "base: &b {app: web, tier: front}\nother: &o {zone: a, tier: back}\nx:\n  <<: *b\n  tier: mid\ny:\n  <<: [*o, *b]\nz: *b\n",
    );
    let labels = |p: &str| -> BTreeMap<String, String> {
        from_node(n.at_path(p).unwrap(), Mode::SCENARIO).unwrap()
    };
    // Keys written in the mapping win, wherever they are; the merged ones fill in.
    assert_eq!(labels("x")["tier"], "mid");
    assert_eq!(labels("x")["app"], "web");
    // Earlier mappings in a merge list win.
    assert_eq!(labels("y")["tier"], "back");
    assert_eq!(labels("y")["app"], "web");
    assert_eq!(labels("z").len(), 2);
    // A merged value keeps its own position (in the anchor).
    assert_eq!(n.at_path("x.app").unwrap().mark.line, 1);
    let e = parse_one("a:\n  <<: 5\n").unwrap_err();
    assert!(e.message.contains("merge key"), "{e}");
    assert_eq!(e.mark.line, 2);
    let e = parse_one("a: *nope\n").unwrap_err();
    assert_eq!(e.mark.line, 1, "{e}");
}

#[test]
fn duplicate_keys_are_refused_with_both_positions() {
    let e =
        parse_one("spec:\n  podSelector:\n    matchLabels:\n      run: nginx\n      run: nginx2\n")
            .unwrap_err();
    assert_eq!((e.mark.line, e.mark.column), (5, 7), "{e}");
    assert!(
        e.message
            .contains("duplicate key \"run\" (first at line 4 column 7"),
        "{e}"
    );
    // Also inside flow mappings and between a quoted and a plain spelling.
    assert!(parse_one("{a: 1, 'a': 2}").is_err());
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = parse_one(&bomb).unwrap_err();
    assert!(e.message.contains("nodes after expanding aliases"), "{e}");
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let e = parse_one(&deep).unwrap_err();
    assert!(e.message.contains("nested more than"), "{e}");
}

#[test]
fn kubernetes_mode_wants_strings_where_kubernetes_does() {
    let n = one("tier: 5\nenabled: yes\nname: web\n");
    let e = from_node::<BTreeMap<String, String>>(&n, Mode::kubernetes(true)).unwrap_err();
    assert_eq!(e.path(), "tier");
    assert_eq!(e.mark(), Some(Mark { line: 1, column: 7 }));
    assert!(
        e.message()
            .starts_with("Invalid value: \"integer\": must be of type string: \"integer\""),
        "{e}"
    );
    let n = one("enabled: yes\n");
    let e = from_node::<BTreeMap<String, String>>(&n, Mode::kubernetes(false)).unwrap_err();
    assert!(
        e.message()
            .starts_with("json: cannot unmarshal bool into Go value of type string"),
        "{e}"
    );
    assert!(e.message().contains("YAML 1.1"), "{e}");
    // The scenario format reads any scalar as text where it wants a string.
    let m: BTreeMap<String, String> = from_node(&one("tier: 5\nns: y\n"), Mode::SCENARIO).unwrap();
    assert_eq!(m["tier"], "5");
    assert_eq!(m["ns"], "y");
    // A key kubectl would rename.
    let e =
        from_node::<BTreeMap<String, String>>(&one("on: a\n"), Mode::kubernetes(true)).unwrap_err();
    assert!(e.message().contains("as the key \"true\""), "{e}");
}

#[test]
fn emitted_yaml_reads_back_identically() {
    let text = "a: {x: 'yes', y: \"80\", z: plain}\nb:\n- c: 1\n  d: [p, 'q, r']\n- ''\n- \"multi\\nline\"\nlong:\n  k1: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\n  k2: wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww\n";
    let n = one(text);
    let out = emit::to_string(&n);
    let back = one(&out);
    let strip = |n: &Node| emit::to_string(n);
    assert_eq!(strip(&back), out, "{out}");
    assert_eq!(back.at_path("a.x").unwrap().as_str(), Some("yes"));
    assert_eq!(back.at_path("b[0].d[1]").unwrap().as_str(), Some("q, r"));
    assert_eq!(back.at_path("b[2]").unwrap().as_str(), Some("multi\nline"));
    for s in [
        "yes", "80", "x: y", "-a", "#", "a #b", "", " lead", "null", "1e3", "y",
    ] {
        let n = Node::map(vec![("k", Node::string(s))]);
        let back = one(&emit::to_string(&n));
        assert_eq!(back.get("k").unwrap().as_str(), Some(s), "{s:?}");
    }
}

#[test]
fn block_scalars_are_written_as_literal_blocks_and_read_back() {
    let table = "      x/a x/b\nx/a   ?   .\n\nx/b   X   ?\n";
    for text in [table, "no newline at\nthe end", "  lead\n   deeper\n"] {
        let n = Node::map(vec![
            (
                "steps",
                Node::seq(vec![Node::map(vec![(
                    "m",
                    Node::map(vec![
                        ("port", Node::plain("80")),
                        ("table", Node::block(text)),
                    ]),
                )])]),
            ),
            ("top", Node::block(text)),
            (
                "item",
                Node::seq(vec![Node::map(vec![
                    ("table", Node::block(text)),
                    ("k", Node::string("v")),
                ])]),
            ),
        ]);
        let out = emit::to_string(&n);
        assert!(out.contains("|2"), "{out}");
        let back = one(&out);
        for path in ["steps[0].m.table", "top", "item[0].table"] {
            assert_eq!(
                back.at_path(path).unwrap().as_str(),
                Some(text),
                "{path} in\n{out}"
            );
        }
        assert_eq!(emit::to_string(&back), out);
    }
    // Text a literal block cannot carry is double-quoted instead.
    for text in ["two newlines\n\n", "tab\tand\nnewline", "single line"] {
        let n = Node::map(vec![("k", Node::block(text))]);
        let out = emit::to_string(&n);
        assert!(!out.contains('|'), "{out}");
        assert_eq!(one(&out).get("k").unwrap().as_str(), Some(text));
    }
}
