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
        self.ended && self.ahead.is_none()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::{collections::VecDeque, task::Waker};

    use super::*;

    /// Frames one by one, learning that it has ended only when polled past the last, as
    /// tonic's request encoder does.
    struct Frames(VecDeque<&'static str>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.pop_front().map(|f| Ok(Frame::data(Bytes::from(f)))))
        }
    }

    fn wrapped(frames: &[&'static str]) -> EndsWithLastFrame {
        EndsWithLastFrame::new(GrpcBody::new(Frames(frames.iter().copied().collect())))
    }

    fn next(body: &mut EndsWithLastFrame) -> Option<Bytes> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(frame) => frame.map(|frame| frame.unwrap().into_data().unwrap()),
            Poll::Pending => panic!("a ready body was pending"),
        }
    }

    #[test]
    fn a_unary_request_ends_with_its_message() {
        let mut plain = GrpcBody::new(Frames(["message"].into()));
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
    }
}
