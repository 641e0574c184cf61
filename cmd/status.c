/* status.c - `ctl status --json`: the FT half of the object (protection, peer, held output, arbiter) from ft's getters. */
#include "status.h"
#include "../ft/backup.h"
#include "../ft/events.h"
#include "../ft/fence.h"
#include "../ft/primary.h"

/* "generation" and "arbiter": {"state": reachable|unreachable|not-asked, "detail": what status says}. */
static void json_arbiter(struct ft_json *j, uint64_t gen, const struct ft_fence_info *fi)
{
	ft_json_u64(j, "generation", gen);
	if (!fi->on) {
		ft_json_key(j, "arbiter");
		ft_json_raw(j, "null");
		return;
	}
	ft_json_open(j, "arbiter");
	ft_json_str(j, "state", fi->reach);
	ft_json_str(j, "detail", fi->state);
	ft_json_close(j);
}

void status_json_primary(struct ft_json *j, const struct ft_primary_info *pi, const struct ft_fence_info *fi)
{
	if (!pi->started) {
		status_json_unprotected(j, fi);
		return;
	}
	ft_json_bool(j, "protected", pi->protected_);
	ft_json_str(j, "peer", pi->peer);
	ft_json_u64(j, "epoch", pi->epoch);
	ft_json_u64(j, "last_commit", pi->last_commit);
	ft_json_key(j, "last_commit_ms_ago");
	if (pi->last_commit_ms_ago < 0)
		ft_json_raw(j, "null");
	else
		ft_json_raw(j, "%lld", (long long)pi->last_commit_ms_ago);
	ft_json_str(j, "link", pi->lost ? "down" : "up");
	ft_json_str(j, "reason", pi->lost ? pi->reason : NULL);
	ft_json_u64(j, "held_packets", pi->held_packets);
	ft_json_u64(j, "held_bytes", pi->held_bytes);
	json_arbiter(j, fi->gen, fi); /* held now: after a won claim, one past the pairing's */
}

void status_json_backup(struct ft_json *j, const struct backup_info *bi, const struct ft_fence_info *fi)
{
	ft_json_str(j, "state", bi->state);
	ft_json_bool(j, "protected", bi->protected_);
	ft_json_str(j, "peer", bi->peer[0] ? bi->peer : NULL);
	ft_json_u64(j, "epoch", bi->last_commit);
	ft_json_u64(j, "last_commit", bi->last_commit);
	ft_json_str(j, "link", bi->link_up ? "up" : "down");
	ft_json_str(j, "reason", bi->reason[0] ? bi->reason : NULL);
	json_arbiter(j, bi->generation, fi); /* the primary's: a backup holds none until it wins a claim */
}

void status_json_unprotected(struct ft_json *j, const struct ft_fence_info *fi)
{
	ft_json_bool(j, "protected", false);
	ft_json_str(j, "peer", NULL);
	json_arbiter(j, fi->gen, fi);
}
