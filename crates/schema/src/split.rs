//! Splitting a step's SQL into statements, so that a failure names the
//! statement that failed.

/// The statements of `sql`, split at `;` outside quotes (`'…'`, `"…"`,
/// `$tag$…$tag$`) and comments (`-- …`, `/* … */`). Statements that hold only
/// whitespace and comments are dropped; each statement is trimmed and keeps
/// its comments.
pub(crate) fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        // A doubled quote is an escaped one.
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                has_code = true;
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                has_code = true;
                match dollar_tag(&sql[i..]) {
                    Some(tag) => {
                        let body = i + tag.len();
                        i = match sql[body..].find(tag) {
                            Some(end) => body + end + tag.len(),
                            None => bytes.len(),
                        };
                    }
                    None => i += 1,
                }
            }
            b';' => {
                let statement = sql[start..i].trim();
                if has_code {
                    out.push(statement);
                }
                has_code = false;
                i += 1;
                start = i;
            }
            c => {
                if !c.is_ascii_whitespace() {
                    has_code = true;
                }
                i += 1;
            }
        }
    }
    let start = start.min(sql.len());
    if has_code {
        out.push(sql[start..].trim());
    }
    out
}

/// `$$` or `$tag$` at the start of `s`.
fn dollar_tag(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('$')?;
    let len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    if rest.as_bytes().get(len) == Some(&b'$') && !rest.starts_with(|c: char| c.is_ascii_digit()) {
        Some(&s[..len + 2])
    } else {
        None
    }
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
    }

    proptest! {
        #[test]
        fn never_panics_and_loses_no_code(sql in "[a-z ;'\"$/*\\-\n]{0,200}") {
            for s in statements(&sql) {
                prop_assert!(sql.contains(s));
            }
        }
    }
}
