//! A gRPC request body that reports its end together with its last message.
//!
//! tonic's request body only learns that it has ended when it is polled again after its one
//! message, so hyper sends each unary request as HEADERS, a DATA frame with the message, and an
//! empty DATA frame carrying END_STREAM — one more write and, on a loaded connection, a task
//! of its own to send it. Looking one frame ahead lets hyper put END_STREAM on the message's
//! own DATA frame.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Body, Frame};
use tonic::{Status, body::Body as GrpcBody, transport::Channel};
use tower::util::MapRequest;

/// A channel whose requests end with their last message.
pub type GrpcChannel = MapRequest<Channel, fn(http::Request<GrpcBody>) -> http::Request<GrpcBody>>;

/// `channel`, its request bodies wrapped in [`EndsWithLastFrame`].
pub fn ending_with_last_frame(channel: Channel) -> GrpcChannel {
    MapRequest::new(channel, |request| {
        request.map(|body| GrpcBody::new(EndsWithLastFrame::new(body)))
    })
}

/// `inner`, polled one frame ahead: once the frame after the one handed out is known to be
/// the end, `is_end_stream` says so.
pub struct EndsWithLastFrame {
    inner: GrpcBody,
    ahead: Option<Result<Frame<Bytes>, Status>>,
    ended: bool,
}

impl EndsWithLastFrame {
    pub fn new(inner: GrpcBody) -> EndsWithLastFrame {
        EndsWithLastFrame {
            inner,
            ahead: None,
            ended: false,
        }
    }
}

impl Body for EndsWithLastFrame {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = match this.ahead.take() {
            Some(frame) => frame,
            None => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(frame) => frame,
                None => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
            },
        };
        if !this.ended {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(next)) => this.ahead = Some(next),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Some(frame))
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_none() && (self.ended || self.inner.is_end_stream())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::{collections::VecDeque, task::Waker};

    use super::*;

    /// What a scripted body does when polled.
    enum Step {
        Data(&'static str),
        Trailers,
        Error,
        Pending,
    }

    /// Steps one by one, learning that it has ended only when polled past the last, as
    /// tonic's request encoder does.
    struct Frames(VecDeque<Step>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(match self.0.pop_front() {
                None => None,
                Some(Step::Data(data)) => Some(Ok(Frame::data(Bytes::from(data)))),
                Some(Step::Trailers) => Some(Ok(Frame::trailers(http::HeaderMap::new()))),
                Some(Step::Error) => Some(Err(Status::cancelled("client cancelled"))),
                Some(Step::Pending) => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            })
        }
    }

    fn scripted(steps: impl IntoIterator<Item = Step>) -> EndsWithLastFrame {
        EndsWithLastFrame::new(GrpcBody::new(Frames(steps.into_iter().collect())))
    }

    fn wrapped(frames: &[&'static str]) -> EndsWithLastFrame {
        scripted(frames.iter().map(|f| Step::Data(f)))
    }

    fn poll(body: &mut EndsWithLastFrame) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(body).poll_frame(&mut cx)
    }

    fn next(body: &mut EndsWithLastFrame) -> Option<Bytes> {
        match poll(body) {
            Poll::Ready(frame) => frame.map(|frame| frame.unwrap().into_data().unwrap()),
            Poll::Pending => panic!("a ready body was pending"),
        }
    }

    #[test]
    fn a_unary_request_ends_with_its_message() {
        let mut plain = GrpcBody::new(Frames([Step::Data("message")].into()));
        let mut cx = Context::from_waker(Waker::noop());
        let _ = Pin::new(&mut plain).poll_frame(&mut cx);
        assert!(!plain.is_end_stream(), "what the wrapper is for");

        let mut body = wrapped(&["message"]);
        assert!(!body.is_end_stream());
        assert_eq!(next(&mut body), Some(Bytes::from("message")));
        assert!(body.is_end_stream());
        assert_eq!(next(&mut body), None);
        assert!(body.is_end_stream());
    }

    #[test]
    fn every_frame_of_a_longer_body_is_kept_in_order() {
        let mut body = wrapped(&["a", "b", "c"]);
        for frame in ["a", "b"] {
            assert_eq!(next(&mut body), Some(Bytes::from(frame)));
            assert!(!body.is_end_stream());
        }
        assert_eq!(next(&mut body), Some(Bytes::from("c")));
        assert!(body.is_end_stream());
        assert_eq!(next(&mut body), None);

        let mut empty = wrapped(&[]);
        assert_eq!(next(&mut empty), None);
        assert!(empty.is_end_stream());
        assert!(EndsWithLastFrame::new(GrpcBody::empty()).is_end_stream());
    }

    /// A look-ahead that finds the next frame not ready yet says nothing about the end; the
    /// frame still comes, in its place.
    #[test]
    fn a_pending_look_ahead_does_not_end_the_body() {
        let mut body = scripted([Step::Data("a"), Step::Pending, Step::Data("b")]);
        assert_eq!(next(&mut body), Some(Bytes::from("a")));
        assert!(!body.is_end_stream());
        assert_eq!(next(&mut body), Some(Bytes::from("b")));
        assert!(body.is_end_stream());
        assert_eq!(next(&mut body), None);
    }

    /// Trailers and errors found by the look-ahead come out after the frame before them.
    #[test]
    fn trailers_and_errors_keep_their_place() {
        let mut body = scripted([Step::Data("a"), Step::Trailers]);
        assert_eq!(next(&mut body), Some(Bytes::from("a")));
        assert!(!body.is_end_stream());
        match poll(&mut body) {
            Poll::Ready(Some(Ok(frame))) => assert!(frame.is_trailers()),
            _ => panic!("the trailers were lost"),
        }
        assert!(body.is_end_stream());

        let mut body = scripted([Step::Data("a"), Step::Error]);
        assert_eq!(next(&mut body), Some(Bytes::from("a")));
        assert!(!body.is_end_stream());
        match poll(&mut body) {
            Poll::Ready(Some(Err(status))) => assert_eq!(status.code(), tonic::Code::Cancelled),
            _ => panic!("the error was lost"),
        }
    }
}
