"""Thin receivers: each writes one Event in the transaction of the change that caused it."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from teams.context import current_actor, current_cause
from tracking.models import ArtifactAlias, ArtifactTag, ArtifactVersion, Run
from tracking.signals import history_logged

from .models import EventType, record_event


def _version_fields(version, actor):
    collection = version.collection
    return {
        "team_id": collection.team_id,
        "project_id": collection.project_id,
        "registry_id": collection.registry_id,
        "collection": collection,
        "version": version,
        "actor": actor or current_actor(),
        "cause": current_cause(),
    }


@receiver(post_save, sender=ArtifactVersion, dispatch_uid="events.version_created")
def version_created(sender, instance, created, raw=False, **kwargs):
    if not created or raw:
        return
    facts = {"aliases": list(getattr(instance, "initial_aliases", ())), "tags": list(getattr(instance, "initial_tags", ()))}
    if instance.collection.is_registry:
        source = instance.source
        facts["source"] = source.version_string if source else ""
        record_event(type=EventType.LINK_ARTIFACT, facts=facts, **_version_fields(instance, instance.created_by))
    else:
        facts["collection_type"] = instance.collection.type
        record_event(type=EventType.CREATE_ARTIFACT, facts=facts, **_version_fields(instance, instance.created_by))


@receiver(post_save, sender=ArtifactAlias, dispatch_uid="events.alias_added")
def alias_added(sender, instance, raw=False, **kwargs):
    if raw:
        return
    record_event(type=EventType.ADD_ARTIFACT_ALIAS, facts={"alias": instance.alias}, **_version_fields(instance.version, instance.created_by))


@receiver(post_save, sender=ArtifactTag, dispatch_uid="events.tag_added")
def tag_added(sender, instance, created, raw=False, **kwargs):
    if not created or raw:
        return
    record_event(type=EventType.ADD_ARTIFACT_TAG, facts={"tag": instance.tag}, **_version_fields(instance.version, instance.created_by))


@receiver(post_save, sender=Run, dispatch_uid="events.run_state")
def run_state_changed(sender, instance, created, raw=False, **kwargs):
    previous, instance._loaded_state = instance._loaded_state, instance.state
    if raw or (not created and previous == instance.state):
        return
    record_event(
        type=EventType.RUN_STATE,
        team_id=instance.project.team_id,
        project_id=instance.project_id,
        run=instance,
        actor=current_actor() or instance.user,
        cause=current_cause(),
        facts={"old_state": previous or "", "new_state": instance.state},
    )


@receiver(history_logged, dispatch_uid="events.history_logged")
def history_batch(sender, run, keys, first_step, last_step, rows, user=None, top_step=None, **kwargs):
    facts = {"keys": keys, "first_step": first_step, "last_step": last_step, "rows": rows}
    if top_step is not None and top_step > last_step:  # earlier steps logged late: the run's windows end further on
        facts["top_step"] = top_step
    record_event(
        type=EventType.RUN_HISTORY,
        team_id=run.project.team_id,
        project_id=run.project_id,
        run=run,
        actor=user or current_actor(),
        cause=current_cause(),
        facts=facts,
    )
