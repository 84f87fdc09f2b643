//! What the job side reads of the rules in force: the offload routes, their pools and the
//! schedules. The request path's snapshot provides it (and changes with every reload), so the
//! workers and the scheduler ask for the current rules each round instead of naming the
//! snapshot, which is built from every feature, this one included.

use std::sync::Arc;

use super::schedule::Schedule;
use super::OffloadRoute;
use crate::template::PathTemplate;
use crate::upstream::Pool;

/// An offload route as the job side sees it.
#[derive(Debug, Clone, Copy)]
pub struct Offload<'a> {
    /// The route's name (jobs are stored by it).
    pub route: &'a Arc<str>,
    /// The name of the pool its jobs replay to.
    pub pool: &'a Arc<str>,
    /// Its path template (a scheduled key's path is matched against it for the dedup key).
    pub template: &'a PathTemplate,
    /// Its offload settings.
    pub offload: &'a OffloadRoute,
}

/// The rules in force for the job side.
pub trait Rules: Send + Sync {
    /// Every route that offloads, in route-table order.
    fn offloads(&self) -> Vec<Offload<'_>>;
    /// The pool named `name`, if the rules have it.
    fn pool(&self, name: &str) -> Option<Arc<Pool>>;
    /// The schedules.
    fn schedules(&self) -> &[Schedule];
}

/// Reads the rules in force now (the server hands in the current snapshot).
pub type CurrentRules = Arc<dyn Fn() -> Arc<dyn Rules> + Send + Sync>;
