//! The gateway's HTTP/JSON contract: the typed requests and answers of
//! its interface (`host/gateway/src/http`), shared by the gateway, which
//! serves them, and the API server's controller, which calls them. States
//! and trap codes are enums; every error answer is an [`ErrorBody`].
//!
//! The JSON is the one the gateway has always emitted: the tests of each
//! module pin it byte for byte.

pub mod app_state;
mod deployments;
mod devices;
pub mod enrollment;
mod error;
pub mod pairing;
mod results;
pub mod trap_code;

pub use deployments::{
    DeployRequest, DeploymentState, DeploymentView, Desired, FLEET_DEPLOYMENT_IDS, ForgetRequest,
    LimitsJson,
};
pub use devices::{AppView, DeviceView, Presence, RuntimeView};
pub use enrollment::{
    EnrollmentAnswer, EnrollmentOutcome, EnrollmentRequest, refusal_code, refusal_of_code,
};
pub use error::ErrorBody;
pub use pairing::{PairingStatus, SetPairing};
pub use results::{ResultView, ValueJson};
