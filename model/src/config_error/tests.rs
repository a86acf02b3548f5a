use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct File {
    #[serde(default)]
    durability: Option<Mode>,
    #[serde(default)]
    max_hops: Option<usize>,
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    route: Vec<Route>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Sync,
    Memory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Limits {
    size: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Route {
    #[serde(deserialize_with = "small")]
    qos: u8,
}

fn small<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = u8::deserialize(d)?;
    if v > 2 {
        return Err(invalid(format!("must be 0, 1 or 2, got {v}")));
    }
    Ok(v)
}

fn parse(text: &str) -> Result<File, ConfigError> {
    from_toml(text, "f.toml", |f: &File| {
        if f.route.len() > 2 {
            return Err(Violation {
                key: "route[2]".into(),
                message: "at most two routes".into(),
            });
        }
        Ok(())
    })
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn wrong_type_names_file_line_and_key() {
    assert_eq!(
        err("\nmax_hops = \"8\"\n"),
        "f.toml:2:12: max_hops: invalid type: string \"8\", expected usize"
    );
}

#[test]
fn unquoted_string_names_the_key_even_though_the_text_does_not_parse() {
    let e = parse("durability = fast\n").unwrap_err();
    assert_eq!(e.key(), Some("durability"));
    assert_eq!(e.line(), Some(1));
    assert!(
        e.to_string().starts_with("f.toml:1:14: durability: "),
        "{e}"
    );
    let e = parse("[limits]\nsize = big\n").unwrap_err();
    assert_eq!(e.key(), Some("limits.size"), "{e}");
    let e = parse("[[route]]\nqos = 1\n[[route]]\nqos = one\n").unwrap_err();
    assert_eq!(e.key(), Some("route[1].qos"), "{e}");
}

#[test]
fn unknown_key_lists_the_expected_ones() {
    assert_eq!(
        err("[limits]\nsize = 1\nsiez = 2\n"),
        "f.toml:3:1: unknown key `limits.siez` (expected `size`)"
    );
}

#[test]
fn out_of_range_value_gives_line_and_key_without_column() {
    assert_eq!(
        err("[[route]]\nqos = 1\n[[route]]\nqos = 3\n"),
        "f.toml:4: route[1].qos: must be 0, 1 or 2, got 3"
    );
}

#[test]
fn violation_is_located_by_its_key_path() {
    let text = "[[route]]\nqos = 0\n[[route]]\nqos = 1\n[[route]]\nqos = 2\n";
    assert_eq!(err(text), "f.toml:5: route[2]: at most two routes");
}

#[test]
fn garbage_never_panics() {
    for text in [
        "=",
        "[",
        "[[",
        "a = \"",
        "\u{0}",
        "x.y = 1\n[x]\n",
        "= = =\n[a]b",
    ] {
        assert!(parse(text).is_err(), "{text:?}");
    }
    assert!(parse("").is_ok());
}

#[test]
fn locate_finds_the_line_of_a_key_checked_after_parsing() {
    let text = "max_hops = 1\n[limits]\nsize = 3\n";
    let v = Violation {
        key: "limits.size".into(),
        message: "too small".into(),
    };
    assert_eq!(
        locate(v, text, "f.toml").to_string(),
        "f.toml:3: limits.size: too small"
    );
}
