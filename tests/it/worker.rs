//! The worker's state and protocol as plain Rust: the worker's model cache (one load at a time,
//! waiters woken rather than polling), the page's liveness verdicts and numbered answers, typed
//! requests and named attachments.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use saeplay::model::WeightProcessing;
use saeplay::sae::explain::{ExplanationSource, FeatureExplanation};
use saeplay::sae::saelens::SaeFiles;
use saeplay::sae::store::Corpus;
use saeplay::ui::feature_list::FeatureList;
use saeplay::ui::worker_protocol::{
    Attachment, Attachments, FeatureCard, FeaturesAnswer, FromWorker, ScanFeatures,
    ScoreExplanation, WorkerRequest, sae_file_attachments, sae_files_attached,
};
use saeplay::ui::worker_state::{
    BUSY_SHOWN_MS, Liveness, ModelCache, SILENCE_LIMIT_MS, WorkerLink,
};

/// Counts its wake-ups.
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Pending until `open` is set (polled by hand, so it registers no waker).
struct Gate(Rc<Cell<bool>>);

impl Future for Gate {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.get() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

type Cache = RefCell<ModelCache<&'static str, String>>;

#[test]
fn a_second_request_waits_for_the_load_under_way_and_shares_it() {
    let cache: Cache = RefCell::default();
    let open = Rc::new(Cell::new(false));
    let loads = Cell::new(0);
    let load = |name: &'static str| {
        let (open, loads) = (Rc::clone(&open), &loads);
        async move {
            loads.set(loads.get() + 1);
            Gate(open).await;
            Ok::<_, String>(format!("model {name}"))
        }
    };
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&wakes));
    let mut context = Context::from_waker(&waker);

    let mut first = pin!(ModelCache::get_or_load(&cache, "a", load("a")));
    let mut second = pin!(ModelCache::get_or_load(&cache, "a", load("a")));
    assert!(first.as_mut().poll(&mut context).is_pending());
    assert!(cache.borrow().is_loading());
    assert!(second.as_mut().poll(&mut context).is_pending());
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

    open.set(true);
    let Poll::Ready(Ok(a)) = first.as_mut().poll(&mut context) else {
        panic!("the load ended");
    };
    assert!(!cache.borrow().is_loading());
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        1,
        "the waiting request is woken"
    );
    let Poll::Ready(Ok(b)) = second.as_mut().poll(&mut context) else {
        panic!("the waiting request finds the model");
    };
    assert!(Rc::ptr_eq(&a, &b));
    assert_eq!(loads.get(), 1, "one load for both requests");
    assert_eq!(*a, "model a");
}

#[test]
fn another_model_replaces_the_one_held_and_a_failed_load_leaves_none() {
    let cache: Cache = RefCell::default();
    let waker = Waker::noop();
    let mut context = Context::from_waker(waker);
    let mut ready = |key: &'static str, result: Result<String, String>| {
        let mut request = pin!(ModelCache::get_or_load(&cache, key, async { result }));
        match request.as_mut().poll(&mut context) {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("nothing to wait for"),
        }
    };
    let a = ready("a", Ok("A".into())).unwrap();
    assert_eq!(*ready("a", Err("not loaded again".into())).unwrap(), *a);
    let b = ready("b", Ok("B".into())).unwrap();
    assert_eq!(*b, "B");
    assert!(cache.borrow().held(&"a").is_none(), "one model at a time");
    assert!(cache.borrow().held(&"b").is_some());
    let error = ready("c", Err("the download failed".into())).unwrap_err();
    assert_eq!(error, "the download failed");
    assert!(cache.borrow().held(&"b").is_none() && cache.borrow().held(&"c").is_none());
    assert!(!cache.borrow().is_loading());
}

#[test]
fn silence_is_work_then_busy_then_a_hang() {
    let mut link = WorkerLink::default();
    link.started();
    assert_eq!(link.starts(), 1);
    assert!(!link.is_ready());
    link.set_ready(true);
    link.heard(1_000.0);
    assert_eq!(
        link.liveness(true, 1, 500.0, 2_000.0),
        Liveness::Working {
            silent_ms: 1_000.0,
            busy_shown: false
        }
    );
    // Silence counts from the later of the last message and the request.
    assert_eq!(
        link.liveness(true, 1, 5_000.0, 5_000.0 + BUSY_SHOWN_MS + 1.0),
        Liveness::Working {
            silent_ms: BUSY_SHOWN_MS + 1.0,
            busy_shown: true
        }
    );
    assert_eq!(
        link.liveness(true, 1, 0.0, 1_000.0 + SILENCE_LIMIT_MS + 1.0),
        Liveness::Hung {
            silent_ms: SILENCE_LIMIT_MS + 1.0
        }
    );
    assert_eq!(link.liveness(false, 1, 0.0, 2_000.0), Liveness::Gone);
    link.started();
    assert_eq!(
        link.liveness(true, 1, 0.0, 2_000.0),
        Liveness::Gone,
        "a request sent to an earlier worker has no answer coming"
    );
}

fn explanation(feature: usize) -> FeatureExplanation {
    FeatureExplanation {
        feature,
        explanation: "once upon a time".into(),
        source: ExplanationSource::Person,
        score: None,
    }
}

#[test]
fn answers_come_back_as_their_request_s_type() {
    let mut link = WorkerLink::default();
    let first = link.next_request();
    let second = link.next_request();
    assert_eq!((first, second, link.last_request()), (1, 2, 2));
    assert!(link.take_answer::<ScoreExplanation>(first).is_none());

    let (id, answer) = FeaturesAnswer::of(FromWorker::Scored {
        id: first,
        scored: explanation(3),
    })
    .unwrap();
    link.answered(id, answer);
    assert_eq!(
        link.take_answer::<ScoreExplanation>(first),
        Some(Ok(explanation(3)))
    );
    assert!(
        link.take_answer::<ScoreExplanation>(first).is_none(),
        "taken once"
    );

    let list = FeatureList {
        tokens: 7,
        rows: Vec::new(),
    };
    let (id, answer) = FeaturesAnswer::of(FromWorker::FeatureList { id: second, list }).unwrap();
    link.answered(id, answer);
    let error = link
        .take_answer::<FeatureCard>(second)
        .unwrap()
        .unwrap_err();
    assert!(error.contains("something other than a card"), "{error}");

    let (id, answer) = FeaturesAnswer::of(FromWorker::FeaturesError {
        id: 9,
        message: "no such feature".into(),
    })
    .unwrap();
    assert_eq!(id, 9);
    assert_eq!(answer.unwrap_err(), "no such feature");
    assert!(FeaturesAnswer::of(FromWorker::Ready).is_none());
}

#[test]
fn a_failure_answers_the_latest_request_unless_it_was_answered() {
    let mut link = WorkerLink::default();
    link.started();
    link.set_ready(true);
    let id = link.next_request();
    link.failed("the background worker stopped (out of memory)".into());
    assert!(!link.is_ready());
    let error = link
        .take_answer::<ScoreExplanation>(id)
        .unwrap()
        .unwrap_err();
    assert!(error.contains("out of memory"), "{error}");

    let id = link.next_request();
    link.answered(id, Ok(FeaturesAnswer::Scored(explanation(1))));
    link.failed("too late".into());
    assert_eq!(
        link.take_answer::<ScoreExplanation>(id),
        Some(Ok(explanation(1)))
    );
}

#[test]
fn requests_become_numbered_messages() {
    let card = FeatureCard {
        key: "sae-1".into(),
        index: 12,
    }
    .message(4)
    .to_json();
    assert!(card.contains("\"kind\":\"feature\""), "{card}");
    assert!(
        card.contains("\"id\":4") && card.contains("\"index\":12"),
        "{card}"
    );
    let scan = ScanFeatures {
        key: "sae-1".into(),
        model_base: "https://example.org/model/".into(),
        processing: WeightProcessing::default(),
        corpus: Corpus::TinyTales { seed: 5 },
    }
    .message(5)
    .to_json();
    assert!(
        scan.contains("\"kind\":\"features\"") && scan.contains("\"id\":5"),
        "{scan}"
    );
    let score = ScoreExplanation {
        key: "sae-1".into(),
        index: 2,
        explanation: "dragons".into(),
    }
    .message(6)
    .to_json();
    assert!(score.contains("\"explanation\":\"dragons\""), "{score}");
}

#[test]
fn attachments_are_taken_by_name() {
    let files = SaeFiles {
        cfg: b"{}".to_vec(),
        weights: vec![1, 2, 3],
        sparsity: None,
        saeplay: Some(b"{\"by\":\"saeplay\"}".to_vec()),
    };
    let sent = sae_file_attachments(&files);
    let names: Vec<&str> = sent.iter().map(|(a, _)| a.name()).collect();
    assert_eq!(
        names,
        ["cfg", "weights", "saeplay"],
        "absent files are not sent"
    );

    // As they arrive: by name, in any order, unknown names left out.
    let mut arrived = Attachments::from_named(
        sent.iter()
            .rev()
            .map(|(a, b)| (a.name().to_string(), b.to_vec()))
            .chain([("mystery".to_string(), vec![9])]),
    );
    let back = sae_files_attached(&mut arrived).unwrap();
    assert_eq!(back.cfg, files.cfg);
    assert_eq!(back.weights, files.weights);
    assert_eq!(back.sparsity, None);
    assert_eq!(back.saeplay, files.saeplay);
    assert_eq!(arrived, Attachments::default(), "each taken once");

    let mut only_cfg = Attachments::from_named([("cfg".to_string(), b"{}".to_vec())]);
    let error = sae_files_attached(&mut only_cfg).unwrap_err();
    assert!(
        error.contains("the SAE's weights did not arrive"),
        "{error}"
    );
    let mut none = Attachments::default();
    assert!(none.take(Attachment::Tensors).is_none());
    let error = none.require(Attachment::Tensors).unwrap_err();
    assert!(error.contains("checkpoint's tensors"), "{error}");
}
