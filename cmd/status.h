/* status.h - `ctl status --json`: the FT half of the object (protection, peer, held output, arbiter) from ft's getters. */
#ifndef FTVMM_STATUS_H
#define FTVMM_STATUS_H

struct ft_json;
struct ft_primary_info;
struct backup_info;
struct ft_fence_info;

/* Members appended to an open object. Without an arbiter "generation" is 0 and "arbiter" null. */
void status_json_primary(struct ft_json *j, const struct ft_primary_info *pi, const struct ft_fence_info *fi);
void status_json_backup(struct ft_json *j, const struct backup_info *bi, const struct ft_fence_info *fi);
/* A VM that runs with no protection started (or none left to stop: see status_json_primary). */
void status_json_unprotected(struct ft_json *j, const struct ft_fence_info *fi);

#endif
