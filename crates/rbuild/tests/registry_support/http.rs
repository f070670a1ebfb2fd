//! The HTTP/1.1 side the tests' own servers share: one request read from a connection
//! (Content-Length or chunked body), after refusing what is not HTTP.

use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, TcpStream};

/// One request as a server of the tests saw it.
pub struct Request {
    /// The request line, e.g. `GET /v2/ HTTP/1.1`.
    pub line: String,
    /// The method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without `?`.
    pub query: String,
    /// The headers as sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// A query parameter's value (`%3A` decoded).
    pub fn query_value(&self, key: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.replace("%3A", ":"))
    }
}

/// Reads the request of `conn`, or `None` (after closing it) when the client sent nothing
/// or something other than HTTP — a TLS ClientHello fails here as it would at a plain-HTTP
/// server. Returns the reader too: its buffer may hold what follows.
pub fn accept(conn: TcpStream) -> std::io::Result<Option<(Request, TcpStream)>> {
    let mut reader = BufReader::new(conn.try_clone()?);
    if reader
        .fill_buf()?
        .first()
        .is_none_or(|b| !b.is_ascii_uppercase())
    {
        conn.shutdown(Shutdown::Both)?;
        return Ok(None);
    }
    Ok(read_request(&mut reader)?.map(|req| (req, conn)))
}

/// Reads one request from `r`; `None` at the end of the stream.
pub fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let line = line.trim_end().to_string();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Request {
        line: line.clone(),
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    };
    if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        req.body.resize(n, 0);
        r.read_exact(&mut req.body)?;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        req.body = read_chunked(r)?;
    }
    Ok(Some(req))
}

/// A chunked body.
fn read_chunked(r: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk)?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}
