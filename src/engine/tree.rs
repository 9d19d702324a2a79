//! Task trees: what a task delegated (`parent_task_id`), transitively, in the order a person
//! reads it — each task followed by its children, oldest first.

use std::collections::{BTreeMap, HashMap};

use super::{Engine, Result};
use crate::domain::Task;

impl Engine {
    /// `root` and its descendants in pre-order, each with its depth below `root`.
    pub async fn tree(&self, root: &str) -> Result<Vec<(Task, u32)>> {
        let root = self.task(root.trim()).await?;
        let all = self.inner.store.subtree(&root.id).await?;
        Ok(preorder(&root.id, all))
    }

    /// How many of the task's descendants are in each state (empty when it delegated
    /// nothing).
    pub async fn descendant_counts(&self, id: &str) -> Result<BTreeMap<String, u32>> {
        let mut counts = BTreeMap::new();
        for (t, depth) in self.inner.store.subtree(id).await? {
            if depth > 0 {
                *counts.entry(t.state.as_str().to_string()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

/// Order a subtree depth-first from `root`, siblings by creation.
fn preorder(root: &str, all: Vec<(Task, u32)>) -> Vec<(Task, u32)> {
    let mut children: HashMap<Option<String>, Vec<(Task, u32)>> = HashMap::new();
    let mut top = None;
    for (t, d) in all {
        if t.id == root {
            top = Some((t, d));
        } else {
            children
                .entry(t.parent_task_id.clone())
                .or_default()
                .push((t, d));
        }
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| (a.0.created_at, &a.0.id).cmp(&(b.0.created_at, &b.0.id)));
    }
    let mut out = Vec::new();
    let mut stack: Vec<(Task, u32)> = top.into_iter().collect();
    while let Some((t, d)) = stack.pop() {
        if let Some(kids) = children.remove(&Some(t.id.clone())) {
            // newest pushed first, so the oldest child comes off the stack next
            stack.extend(kids.into_iter().rev());
        }
        out.push((t, d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TaskState, Usage};

    fn task(id: &str, parent: Option<&str>, at: i64) -> Task {
        Task {
            id: id.into(),
            project_path: "/p".into(),
            session_id: "s".into(),
            parent_task_id: parent.map(str::to_string),
            prompt: String::new(),
            provider: "x".into(),
            model: None,
            mode: None,
            permission: None,
            state: TaskState::Completed,
            created_at: at,
            started_at: None,
            ended_at: None,
            summary: None,
            error: None,
            usage: Usage::default(),
            files: Vec::new(),
            node_id: None,
            retry_of: None,
            budget: Default::default(),
            waiting_for: None,
            options: Default::default(),
        }
    }

    #[test]
    fn children_follow_their_parent_oldest_first() {
        let all = vec![
            (task("c2", Some("r"), 30), 1),
            (task("g1", Some("c1"), 40), 2),
            (task("r", None, 10), 0),
            (task("c1", Some("r"), 20), 1),
            (task("g2", Some("c1"), 50), 2),
        ];
        let order: Vec<(String, u32)> = preorder("r", all)
            .into_iter()
            .map(|(t, d)| (t.id, d))
            .collect();
        assert_eq!(
            order,
            vec![
                ("r".into(), 0),
                ("c1".into(), 1),
                ("g1".into(), 2),
                ("g2".into(), 2),
                ("c2".into(), 1)
            ]
        );
    }
}
