//! Memory a large request body cost goes back to the system once it is answered.
//!
//! Decoding a near-limit document (60,000 labels, a 200,000-item list) allocates tens of
//! megabytes in small pieces. glibc keeps freed small pieces in each thread's arena, so
//! without a trim a process that once refused a few such documents keeps their peak as
//! resident memory for good. `malloc_trim` hands the free pages back; it runs only after
//! bodies large enough to matter, off the async threads.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

/// Bodies from this size on are followed by a trim.
const LARGE_BODY: u64 = 256 * 1024;

pub(super) async fn trim_after_large_bodies(request: Request, next: Next) -> Response {
    let large = body_may_be_large(&request);
    let response = next.run(request).await;
    if large {
        tokio::task::spawn_blocking(trim);
    }
    response
}

/// A declared length past [`LARGE_BODY`], or a body of undeclared length (chunked).
fn body_may_be_large(request: &Request) -> bool {
    let headers = request.headers();
    match headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(n) => n >= LARGE_BODY,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes the
    // allocator's own locks and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method("POST").uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn only_large_or_unsized_bodies_are_followed_by_a_trim() {
        assert!(!body_may_be_large(&request(&[])));
        assert!(!body_may_be_large(&request(&[("content-length", "1000")])));
        assert!(body_may_be_large(&request(&[("content-length", "262144")])));
        assert!(body_may_be_large(&request(&[(
            "transfer-encoding",
            "chunked"
        )])));
        assert!(!body_may_be_large(&request(&[("content-length", "junk")])));
    }
}
