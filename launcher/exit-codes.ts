/** Exit codes mprun gives meaning to. */

/** When --timeout expires (as timeout(1)). */
export const TIMEOUT_EXIT_CODE = 124;

/** A rank that left because the job was aborting (not a failure of its own). */
export const ABORTED_EXIT_CODE = 254;
