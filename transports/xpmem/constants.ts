/** XPMEM's constants (include/xpmem.h), so that code written against libxpmem reads the same. */
export const XPMEM_RDONLY = 0x1;
export const XPMEM_RDWR = 0x2;
export const XPMEM_PERMIT_MODE = 0x1;
/** The version our userspace backends report: XPMEM 2.7.4's interface version. */
export const XPMEM_USERSPACE_VERSION = 0x00027004;

export type XpmemBackendName = 'kernel' | 'shm' | 'cma';

/** Best first: kernel XPMEM, then mapping of shared-memory segments, then CMA copies. */
export const BACKEND_ORDER: readonly XpmemBackendName[] = ['kernel', 'shm', 'cma'];
