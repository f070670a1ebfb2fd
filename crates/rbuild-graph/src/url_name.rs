//! The names an `ADD <url>` file gets, as BuildKit gives them. A URL comes from a hostile
//! Dockerfile, so its name is data: it never holds a `/`, and the name written to disk is
//! never `.`, `..`, empty or a control character.
//!
//! Two names are involved, as in BuildKit:
//! - the *source name* ([`url_file_name`]): what the Dockerfile frontend calls the file, the
//!   last element of the URL's decoded path; the ADD copies this path out of the download's
//!   directory;
//! - the *stored name* ([`stored_file_name`]): what the download is written as inside that
//!   directory (BuildKit's http source makes the source name safe, `download` when it is not).
//!
//! Where the two differ, the copy sees what BuildKit's sees: `..` names the download's
//! directory itself (so its one file, `download`, is copied), and a name with control
//! characters or surrounding blanks names nothing ("not found").

/// The name BuildKit's http source gives a download whose name is not usable.
pub const DEFAULT_STORED_NAME: &str = "download";

/// The source name of an unnamed URL (its path is empty, `/` or `.`).
pub const UNNAMED: &str = "__unnamed__";

/// The source name of a URL source: Go's `path.Base` of the URL's percent-decoded path,
/// [`UNNAMED`] when that is `.` or `/`, or when the path cannot be decoded. Never contains
/// a `/`.
pub fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['#', '?']).next().unwrap_or_default();
    let raw_path = rest.find('/').map_or("", |i| &rest[i..]);
    let Some(path) = decode_path(raw_path) else {
        return UNNAMED.to_string();
    };
    match path_base(&path) {
        "." | "/" => UNNAMED.to_string(),
        base => base.to_string(),
    }
}

/// The name a download is stored as, from its source name: blanks trimmed, the last `/`
/// element, [`DEFAULT_STORED_NAME`] when that is empty, `.`, `..` or holds a control
/// character.
pub fn stored_file_name(source_name: &str) -> String {
    let base = path_base(source_name.trim());
    let unusable = matches!(base, "" | "." | ".." | "/") || base.chars().any(char::is_control);
    if unusable {
        DEFAULT_STORED_NAME.to_string()
    } else {
        base.to_string()
    }
}

/// Go's `path.Base`: the last element after trailing slashes are removed; `.` for an empty
/// path, `/` for a path of slashes only.
fn path_base(path: &str) -> &str {
    if path.is_empty() {
        return ".";
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// Decodes a URL path's `%XX` escapes as Go's `url.Parse` does: `None` when a `%` is not
/// followed by two hex digits or the path holds a control character (Go refuses the URL).
fn decode_path(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let bad_escape = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if bad_escape || raw.chars().any(|c| c.is_ascii_control()) {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(raw);
    Some(decoded.decode_utf8_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Source and stored names recorded from BuildKit v0.32 (`ADD <url> /d/` against a
    /// loopback server), with where the file landed.
    #[test]
    fn names_follow_buildkit() {
        let cases = [
            // (URL path, source name, stored name); BuildKit's result in the comment
            ("/dl/a.tar.gz?x=1#f", "a.tar.gz", "a.tar.gz"),
            ("/dir/", "dir", "dir"),
            ("/", UNNAMED, UNNAMED),
            ("", UNNAMED, UNNAMED),
            ("/a%20b", "a b", "a b"),
            ("/x/%2Ftmp%2Fvictim", "victim", "victim"), // /d/victim
            ("/x/..%2F..%2F..%2Ftmp%2Fvictim", "victim", "victim"), // /d/victim
            ("/x/%2E", UNNAMED, UNNAMED),               // /d/__unnamed__
            ("/x/%2E%2E", "..", "download"),            // /d/download
            ("/x/..", "..", "download"),                // /d/download
            ("/x/..%2F", "..", "download"),             // /d/download
            ("/x/%2E%2E/", "..", "download"),           // /d/download
            ("/x/a%2Fb%2F", "b", "b"),                  // /d/b
            ("/x/%2F", "x", "x"),                       // /d/x
            ("/x/..%5C", "..\\", "..\\"),               // /d/..\
            ("/x/a%0Ab", "a\nb", "download"),           // error: "/a\nb": not found
            ("/x/%20y%20", " y ", "y"),                 // error: "/ y ": not found
            ("/x/a%00b", "a\0b", "download"),           // error
            ("/x/%zz", UNNAMED, UNNAMED),
        ];
        for (path, source, stored) in cases {
            let url = format!("http://127.0.0.1:8080{path}");
            let name = url_file_name(&url);
            assert_eq!(name, source, "{url}");
            assert_eq!(stored_file_name(&name), stored, "{url}");
        }
        assert_eq!(url_file_name("http://h:8080"), UNNAMED);
    }

    #[test]
    fn no_name_holds_a_slash_or_is_a_dot_name() {
        for path in [
            "/%2F%2F",
            "/a/%2F..",
            "/%2F",
            "/.%2F.",
            "//",
            "/%2E%2E%2F%2E%2E",
        ] {
            let name = url_file_name(&format!("http://h{path}"));
            assert!(!name.contains('/'), "{path}: {name}");
            let stored = stored_file_name(&name);
            assert!(!stored.contains('/') && stored != "." && stored != "..");
        }
    }
}
