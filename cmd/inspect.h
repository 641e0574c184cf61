/* inspect.h - `ftvmm inspect FILE`: a snapshot's state printed for people. */
#ifndef FTVMM_INSPECT_H
#define FTVMM_INSPECT_H

int cmd_inspect(int argc, char **argv);

#endif
