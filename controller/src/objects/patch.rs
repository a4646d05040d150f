//! `PATCH` bodies other than server-side apply: a JSON merge patch (RFC 7386, what
//! `hkctl label`, `annotate`, `suspend` send) or a JSON patch (RFC 6902, a list of
//! operations with `test` for a precondition).

use super::*;

/// A patch and how to apply it.
#[derive(Clone, Debug)]
pub enum Patch {
    /// `application/merge-patch+json`: objects merge, `null` removes a field, anything else
    /// replaces it (lists are replaced whole).
    Merge(Value),
    /// `application/json-patch+json`: operations applied in order, all or none.
    Json(json_patch::Patch),
}

impl Patch {
    /// The patch a body of `content_type` holds, or why it is not one.
    pub fn parse(content_type: &str, body: Value) -> Result<Patch> {
        if content_type.starts_with("application/merge-patch+json") {
            if !body.is_object() {
                return Err(Error::BadRequest(
                    "a merge patch is a JSON object, e.g. {\"metadata\":{\"labels\":{\"tier\":\"web\"}}}"
                        .into(),
                ));
            }
            return Ok(Patch::Merge(body));
        }
        if content_type.starts_with("application/json-patch+json") {
            return serde_json::from_value(body).map(Patch::Json).map_err(|e| {
                Error::BadRequest(format!(
                    "a JSON patch is a list of operations, e.g. [{{\"op\":\"replace\",\"path\":\"/spec/paused\",\"value\":true}}]: {e}"
                ))
            });
        }
        Err(Error::BadRequest(format!(
            "PATCH with content type {content_type:?}: use application/apply-patch+yaml (or \
             +json), application/merge-patch+json or application/json-patch+json"
        )))
    }

    /// Applies the patch to `object` (the stored `kind`/`name`).
    pub(super) fn apply_to(&self, object: &mut Value, kind: &KindInfo, name: &str) -> Result<()> {
        match self {
            Patch::Merge(p) => {
                json_patch::merge(object, p);
                Ok(())
            }
            Patch::Json(p) => json_patch::patch(object, p).map_err(|e| {
                Error::BadRequest(format!("{}/{name}: the JSON patch failed: {e}", kind.kind))
            }),
        }
    }
}

impl Objects {
    /// `kubectl patch`: the patch is applied to the stored object as it is now, the result
    /// validated as a whole object and written with compare-and-swap (re-read and patched
    /// again when someone wrote in between, so two label patches never lose one another).
    /// As with `update`, status and server-set metadata keep their stored values.
    pub async fn patch(
        &self,
        kind: &KindInfo,
        name: &str,
        patch: &Patch,
        dry_run: bool,
    ) -> Result<Value> {
        for _ in 0..8 {
            let current = self.current_of(kind, name, None, None).await?;
            let stored = Self::to_object(&current)?;
            let mut patched = stored.clone();
            patch.apply_to(&mut patched, kind, name)?;
            if patched.pointer("/metadata/name") != stored.pointer("/metadata/name") {
                return Err(Error::BadRequest(format!(
                    "{}/{name}: a patch cannot rename an object (metadata.name)",
                    kind.kind
                )));
            }
            let desired = self.decode(kind, patched, Some(name))?.to_value();
            let next = merge_update(&stored, &desired, false)?;
            match self
                .write_next(kind, name, &current, &stored, next, dry_run)
                .await
            {
                Err(Error::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(Error::Conflict {
            kind: kind.kind.into(),
            name: name.into(),
            detail: "too many concurrent writers".into(),
        })
    }
}
