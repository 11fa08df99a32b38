//! The request deadline: a request whose handling takes longer than
//! [`REQUEST_TIMEOUT`] (a client trickling its body, a stuck dependency) is
//! answered 408 and dropped.
//!
//! Written here rather than taken from `tower_http::timeout`, which starts a
//! timer for every request before polling it. Here the handler is polled
//! first and the timer armed only if it has to wait: a request answered from
//! memory (a token check and a cached user) never touches tokio's timer
//! wheel, which cost about a seventh of `GET /users/me`'s throughput.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::time::{Instant, Sleep};

use crate::http::error::Error;

/// How long the handling of one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers 408 when the inner service takes longer than `after`.
#[derive(Clone, Copy)]
pub struct RequestTimeoutLayer {
    after: Duration,
}

impl RequestTimeoutLayer {
    pub fn new(after: Duration) -> Self {
        Self { after }
    }
}

impl<S> tower::Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            inner,
            after: self.after,
        }
    }
}

#[derive(Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    after: Duration,
}

impl<S, B> tower::Service<Request<B>> for RequestTimeout<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Deadline<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Deadline {
            inner: self.inner.call(req),
            // The deadline counts from the request's arrival, not from the
            // first time the handler had to wait.
            deadline: Instant::now() + self.after,
            sleep: None,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct Deadline<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        // Boxed so the common case (never armed) keeps the future small.
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<F, E> Future for Deadline<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        let deadline = *this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Ok(Error::Timeout.into_response()))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::{Layer, ServiceExt};

    use super::*;

    async fn respond_after(wait: Duration) -> Response {
        let slow = tower::service_fn(move |_req: Request| async move {
            tokio::time::sleep(wait).await;
            Ok::<_, Infallible>(StatusCode::NO_CONTENT.into_response())
        });
        RequestTimeoutLayer::new(Duration::from_secs(30))
            .layer(slow)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_within_the_deadline_answers() {
        assert_eq!(
            respond_after(Duration::from_secs(29)).await.status(),
            StatusCode::NO_CONTENT
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_past_the_deadline_gets_408_with_a_detail() {
        let r = respond_after(Duration::from_secs(31)).await;
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"detail":"Request timed out"}"#);
    }
}
