//! Splitting a step's SQL into statements, so that a failure names the
//! statement that failed.
//!
//! The split follows the tokenizer of the DuckDB sysdb is built with
//! (`src/parser/peg/tokenizer/base_tokenizer.cpp`): a statement ends at a
//! `;` that the tokenizer reads as a terminator, and at no other `;`. What
//! the tokenizer keeps a `;` inside of:
//!
//! - string literals `'…'` (a doubled quote is a quote), and `E'…'` (`e'…'`)
//!   where a backslash also escapes the next character; the `E` starts an
//!   escape string only where a token starts (after a number, an operator,
//!   a space…), not at the end of a word (`namE'…'` is a word and a plain
//!   string);
//! - quoted identifiers `"…"` and `` `…` `` (a doubled delimiter is one);
//! - dollar quotes `$tag$…$tag$` and `$$…$$`, where `$` followed by a digit
//!   is a parameter, and `$` inside a word (`a$b`) is part of the word;
//! - comments `-- …` (to the end of the line, `\n` or `\r`) and `/* … */`,
//!   which nest.
//!
//! `the_split_agrees_with_duckdb` checks this against DuckDB itself.

/// The statements of `sql`, split where DuckDB's tokenizer ends a statement.
/// Statements that hold only whitespace and comments are dropped; each
/// statement is trimmed and keeps its comments.
pub(crate) fn statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    let mut state = State::Start;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match state {
            State::Start => {
                match c {
                    b';' => {
                        if has_code {
                            out.push(sql[start..i].trim());
                        }
                        has_code = false;
                        start = i + 1;
                    }
                    b'-' if next == Some(b'-') => {
                        state = State::LineComment;
                        i += 1;
                    }
                    b'/' if next == Some(b'*') => {
                        state = State::BlockComment(1);
                        i += 1;
                    }
                    c if is_space(c) => {}
                    c => {
                        has_code = true;
                        match c {
                            b'\'' => state = State::String { escapes: false },
                            b'"' | b'`' => state = State::Quoted(c),
                            b'$' => {
                                if let Some(close) = dollar_tag_end(b, i) {
                                    state = State::Dollar {
                                        tag_start: i + 1,
                                        tag_end: close,
                                    };
                                    i = close;
                                }
                            }
                            b'E' | b'e' if next == Some(b'\'') => {
                                state = State::String { escapes: true };
                                i += 1;
                            }
                            c if is_initial_number(c) => state = State::Number { start: i },
                            c if is_operator(c) => {}
                            _ => state = State::Word,
                        }
                    }
                }
                i += 1;
            }
            State::Word => {
                if c == b'$' || !(is_space(c) || is_operator(c)) {
                    i += 1;
                } else {
                    // The word ends; `c` starts the next token.
                    state = State::Start;
                }
            }
            State::Number { start } => {
                let previous = b[i - 1];
                let goes_on = is_initial_number(c)
                    || (c == b'_'
                        && previous.is_ascii_digit()
                        && next.is_some_and(|n| n.is_ascii_digit()))
                    || (is_exponent(c)
                        && !is_exponent(previous)
                        && (b[start].is_ascii_digit() || previous.is_ascii_digit()))
                    || ((c == b'+' || c == b'-') && is_exponent(previous));
                if goes_on {
                    i += 1;
                } else {
                    // The number ends after its last digit or point; what
                    // follows (an `e` included) starts the next token.
                    while !is_initial_number(b[i - 1]) {
                        i -= 1;
                    }
                    state = State::Start;
                }
            }
            State::String { escapes } => {
                if escapes && c == b'\\' && next.is_some() {
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if next == Some(b'\'') {
                        i += 2;
                        continue;
                    }
                    state = State::Start;
                }
                i += 1;
            }
            State::Quoted(delimiter) => {
                if c == delimiter {
                    if next == Some(delimiter) {
                        i += 2;
                        continue;
                    }
                    state = State::Start;
                }
                i += 1;
            }
            State::LineComment => {
                if c == b'\n' || c == b'\r' {
                    state = State::Start;
                }
                i += 1;
            }
            State::BlockComment(depth) => {
                if c == b'/' && next == Some(b'*') {
                    state = State::BlockComment(depth + 1);
                    i += 2;
                } else if c == b'*' && next == Some(b'/') {
                    state = match depth - 1 {
                        0 => State::Start,
                        depth => State::BlockComment(depth),
                    };
                    i += 2;
                } else {
                    i += 1;
                }
            }
            State::Dollar { tag_start, tag_end } => {
                let tag = &b[tag_start..tag_end];
                let rest = &b[i + 1..];
                if c == b'$' && rest.starts_with(tag) && rest.get(tag.len()) == Some(&b'$') {
                    state = State::Start;
                    i += tag.len() + 2;
                } else {
                    i += 1;
                }
            }
        }
    }
    let start = start.min(sql.len());
    if has_code {
        out.push(sql[start..].trim());
    }
    out
}

/// Where the tokenizer is, as far as a `;` is concerned.
#[derive(Clone, Copy)]
enum State {
    /// Between tokens (DuckDB's `STANDARD`, and its `OPERATOR`, which ends
    /// at the same characters).
    Start,
    /// A keyword or an identifier.
    Word,
    /// A number that began at `start`.
    Number {
        start: usize,
    },
    String {
        escapes: bool,
    },
    Quoted(u8),
    LineComment,
    BlockComment(usize),
    /// A dollar-quoted string whose tag is `b[tag_start..tag_end]`.
    Dollar {
        tag_start: usize,
        tag_end: usize,
    },
}

/// The index of the `$` that closes the opening tag of a dollar quote whose
/// first `$` is at `at`, if one opens there.
fn dollar_tag_end(b: &[u8], at: usize) -> Option<usize> {
    if b.get(at + 1)?.is_ascii_digit() {
        return None; // a positional parameter, `$1`
    }
    for (i, &c) in b.iter().enumerate().skip(at + 1) {
        if c == b'$' {
            return Some(i);
        }
        if !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80) {
            return None; // a named parameter, `$name`
        }
    }
    None
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// DuckDB's `StringUtil::CharacterIsOperator`: ASCII punctuation but `_`.
fn is_operator(c: u8) -> bool {
    c != b'_' && c.is_ascii_punctuation()
}

fn is_initial_number(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.'
}

fn is_exponent(c: u8) -> bool {
    c == b'e' || c == b'E'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_comments() {
        let sql = "CREATE TABLE t (x VARCHAR DEFAULT 'a;b');\n\
                   -- a comment; with a semicolon\n\
                   INSERT INTO \"we;ird\" VALUES ('it''s; fine'); /* block; */\n\
                   CREATE MACRO m() AS $$ 1; $$;\n\
                   SELECT $tag$ ; $tag$\n";
        assert_eq!(
            statements(sql),
            [
                "CREATE TABLE t (x VARCHAR DEFAULT 'a;b')",
                "-- a comment; with a semicolon\nINSERT INTO \"we;ird\" VALUES ('it''s; fine')",
                "/* block; */\nCREATE MACRO m() AS $$ 1; $$",
                "SELECT $tag$ ; $tag$",
            ]
        );
    }

    #[test]
    fn comment_only_and_empty_statements_are_dropped() {
        assert!(statements("").is_empty());
        assert!(statements(" ;; -- nothing\n /* here */ ;").is_empty());
        assert_eq!(statements("SELECT 1"), ["SELECT 1"]);
    }

    #[test]
    fn positional_parameters_are_not_dollar_quotes() {
        assert_eq!(statements("SELECT $1; SELECT 2"), ["SELECT $1", "SELECT 2"]);
        assert_eq!(
            statements("SELECT $name; SELECT 2"),
            ["SELECT $name", "SELECT 2"]
        );
    }

    #[test]
    fn escape_strings_keep_an_escaped_quote() {
        assert_eq!(
            statements("INSERT INTO t VALUES (E'o\\'brien; jr');\nSELECT e'\\\\'; SELECT 1"),
            [
                "INSERT INTO t VALUES (E'o\\'brien; jr')",
                "SELECT e'\\\\'",
                "SELECT 1"
            ]
        );
        // A backslash escapes nothing in a plain string, and an `E` at the
        // end of a word does not make one; after a number it does.
        assert_eq!(
            statements("SELECT 'a\\'; SELECT namE'x\\'; SELECT 1E'\\';'"),
            ["SELECT 'a\\'", "SELECT namE'x\\'", "SELECT 1E'\\';'"]
        );
    }

    #[test]
    fn block_comments_nest() {
        assert_eq!(
            statements("SELECT 1 /* a /* nested */ ; */ + 1; SELECT 2"),
            ["SELECT 1 /* a /* nested */ ; */ + 1", "SELECT 2"]
        );
    }

    #[test]
    fn a_dollar_inside_a_word_is_part_of_it() {
        assert_eq!(
            statements("SELECT 1 AS a$b; SELECT 2 AS c$; SELECT $x$;$x$"),
            ["SELECT 1 AS a$b", "SELECT 2 AS c$", "SELECT $x$;$x$"]
        );
    }

    #[test]
    fn backticks_quote_identifiers_and_line_comments_end_at_a_carriage_return() {
        assert_eq!(
            statements("SELECT 1 AS `a;b`; -- c;\rSELECT 2"),
            ["SELECT 1 AS `a;b`", "-- c;\rSELECT 2"]
        );
    }

    /// One way of writing a value, and the value DuckDB must read.
    #[derive(Debug, Clone)]
    enum Literal {
        Plain(String),
        Escape(String),
        Dollar { tag: String, body: String },
    }

    impl Literal {
        fn sql(&self) -> String {
            match self {
                Literal::Plain(s) => format!("'{}'", s.replace('\'', "''")),
                Literal::Escape(s) => {
                    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
                }
                Literal::Dollar { tag, body } => format!("${tag}${body}${tag}$"),
            }
        }

        fn value(&self) -> &str {
            match self {
                Literal::Plain(s) | Literal::Escape(s) => s,
                Literal::Dollar { body, .. } => body,
            }
        }
    }

    /// Text full of what ends or starts something somewhere.
    const TRICKY: &str = "[a-z;'\"`$\\ */\\-\n]{0,12}";

    fn literal() -> impl Strategy<Value = Literal> {
        prop_oneof![
            TRICKY.prop_map(Literal::Plain),
            TRICKY.prop_map(Literal::Escape),
            ("(|[a-z_][a-z0-9_]{0,2})", TRICKY)
                .prop_filter("the body holds its closing tag", |(tag, body)| {
                    !format!("{body}$").contains(&format!("${tag}$"))
                })
                .prop_map(|(tag, body)| Literal::Dollar { tag, body }),
        ]
    }

    fn identifier() -> impl Strategy<Value = String> {
        prop_oneof![
            "c_[a-z0-9_$]{0,5}",
            "[a-z;'`$ */\\-]{1,8}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
            "[a-z;'\"$ */\\-]{1,8}".prop_map(|s| format!("`{}`", s.replace('`', "``"))),
        ]
    }

    /// Nothing, a line comment or a block comment with nested ones.
    fn comment() -> impl Strategy<Value = String> {
        let text = "[a-z;'\"`$ \\-]{0,8}";
        prop_oneof![
            Just(" ".to_owned()),
            text.prop_map(|t| format!(" -- {t}\n")),
            (text, text, 0..3usize).prop_map(|(a, b, depth)| {
                let mut c = format!("/* {a} */");
                for _ in 0..depth {
                    c = format!("/* {b} {c} ; {a} */");
                }
                format!(" {c} ")
            }),
        ]
    }

    fn statement() -> impl Strategy<Value = (Literal, String)> {
        (
            literal(),
            identifier(),
            identifier(),
            [comment(), comment(), comment()],
        )
            .prop_map(|(literal, a, b, [c0, c1, c2])| {
                let sql = format!(
                    "{c0}INSERT INTO log{c1}SELECT {{k}} AS {a}, {} AS {b}{c2}",
                    literal.sql()
                );
                (literal, sql)
            })
    }

    thread_local! {
        static DUCKDB: duckdb::Connection =
            duckdb::Connection::open_in_memory().expect("in-memory DuckDB");
    }

    /// The rows of a fresh `log` table after DuckDB ran `pieces` in order.
    fn log_after(pieces: &[&str]) -> Vec<(i32, String)> {
        DUCKDB.with(|conn| {
            conn.execute_batch("CREATE OR REPLACE TABLE log (k INTEGER, v VARCHAR)")
                .expect("create log");
            for piece in pieces {
                if let Err(e) = conn.execute_batch(piece) {
                    panic!("DuckDB refused {piece:?}: {e}");
                }
            }
            let mut query = conn
                .prepare("SELECT k, v FROM log ORDER BY k")
                .expect("prepare");
            query
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// DuckDB runs the whole text; the split's statements, run one at a
        /// time, leave the same rows, one per statement written.
        #[test]
        fn the_split_agrees_with_duckdb(
            written in proptest::collection::vec(statement(), 1..5),
            trailing in prop_oneof![Just(""), Just(";"), Just("; -- end;"), Just(";;\n")],
        ) {
            let sql = written
                .iter()
                .enumerate()
                .map(|(k, (_, s))| s.replace("{k}", &k.to_string()))
                .collect::<Vec<_>>()
                .join(";\n")
                + trailing;
            let expected: Vec<(i32, String)> = written
                .iter()
                .enumerate()
                .map(|(k, (literal, _))| (k as i32, literal.value().to_owned()))
                .collect();
            prop_assert_eq!(&log_after(&[sql.as_str()]), &expected, "DuckDB read {}", sql);
            let split = statements(&sql);
            prop_assert_eq!(split.len(), written.len(), "{:?}", split);
            prop_assert_eq!(&log_after(&split), &expected);
        }

        #[test]
        fn never_panics_and_loses_no_code(sql in "[a-z ;'\"$/*\\-\n]{0,200}") {
            for s in statements(&sql) {
                prop_assert!(sql.contains(s));
            }
        }
    }
}
