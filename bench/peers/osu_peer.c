/*
 * The Open MPI side of mprun's benchmark comparisons: the same operations,
 * sizes, iteration counts and timing method as bench/osu.ts, printed as the
 * same JSON lines ({"benchmark","size","value","iterations"}), so that
 * bench/compare.ts can put both side by side.
 *
 *   mpicc -O2 -o osu_peer osu_peer.c
 *   mpirun -np N ./osu_peer NAME [-m [min:]max] [-i ITER] [-x SKIP] [-W WINDOW] [--cold N]
 *
 * NAME: latency bw bibw put_latency get_latency put_bw get_bw atomic_latency
 *       barrier bcast reduce allreduce allgather gather scatter alltoall
 * Reductions are MPI_DOUBLE sums (sizes in bytes). Like osu_latency and
 * friends: point-to-point runs between ranks 0 and 1; collectives time each
 * call alone, followed by a barrier, and report the average of the ranks'
 * means. One-sided runs use MPI_Win_allocate with passive target locking
 * (lock_all once, flush after each window / operation), as OSU's defaults do.
 * latency, barrier and allreduce first time N (500) calls right after
 * MPI_Init (8-byte ping-pong one way, MPI_Barrier, one-double MPI_Allreduce)
 * and print them last as {"benchmark","size","value","iterations","cold":true},
 * as bench/osu.ts does; --cold 0 leaves that out.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LARGE 8192

static int rank, nranks;
static long min_size = -1, max_size = -1;
static int iters = -1, skip = -1, iters_large = -1, skip_large = -1, window = 64, cold = 500;

static void row(const char *name, long size, double value, int n) {
  if (rank == 0) printf("{\"benchmark\":\"%s\",\"size\":%ld,\"value\":%.4f,\"iterations\":%d}\n", name, size, value, n);
  fflush(stdout);
}

static void loops(long size, int *it, int *sk) {
  *it = size > LARGE ? iters_large : iters;
  *sk = size > LARGE ? skip_large : skip;
}

static void defaults(int bw, int coll, long lo, long hi) {
  if (min_size < 0) min_size = lo;
  if (max_size < 0) max_size = hi;
  if (iters < 0) {
    iters = bw ? 100 : coll ? 1000 : 10000;
    iters_large = bw ? 20 : coll ? 100 : 1000;
  } else {
    iters_large = iters;
  }
  if (skip < 0) {
    skip = bw ? 10 : coll ? 200 : 100;
    skip_large = bw ? 2 : 10;
  } else {
    skip_large = skip;
  }
}

#define FOR_SIZES(s) for (long s = (min_size == 0 ? 0 : min_size); s <= max_size; s = (s == 0 ? 1 : s * 2))

static void latency(void) {
  char *buf = malloc(max_size + 1);
  memset(buf, 1, max_size + 1);
  FOR_SIZES(size) {
    int it, sk;
    loops(size, &it, &sk);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = 0;
    for (int i = 0; i < it + sk; i++) {
      if (i == sk) t0 = MPI_Wtime();
      if (rank == 0) {
        MPI_Send(buf, size, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
        MPI_Recv(buf, size, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == 1) {
        MPI_Recv(buf, size, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buf, size, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
      }
    }
    row("latency", size, (MPI_Wtime() - t0) * 1e6 / (2.0 * it), it);
  }
  free(buf);
}

static void bandwidth(int both) {
  char *buf = malloc(max_size), *rbuf = malloc(max_size);
  memset(buf, 1, max_size);
  MPI_Request *req = malloc(sizeof(MPI_Request) * 2 * window);
  char ack[4];
  FOR_SIZES(size) {
    if (size == 0) continue;
    int it, sk;
    loops(size, &it, &sk);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = 0;
    if (rank < 2) {
      int peer = 1 - rank;
      for (int i = 0; i < it + sk; i++) {
        if (i == sk) t0 = MPI_Wtime();
        int k = 0;
        if (rank == 0 || both)
          for (int w = 0; w < window; w++) MPI_Isend(buf, size, MPI_CHAR, peer, 2, MPI_COMM_WORLD, &req[k++]);
        if (rank == 1 || both)
          for (int w = 0; w < window; w++) MPI_Irecv(rbuf, size, MPI_CHAR, peer, 2, MPI_COMM_WORLD, &req[k++]);
        MPI_Waitall(k, req, MPI_STATUSES_IGNORE);
        if (rank == 1) MPI_Send(ack, 4, MPI_CHAR, 0, 3, MPI_COMM_WORLD);
        else MPI_Recv(ack, 4, MPI_CHAR, 1, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      }
      double s = MPI_Wtime() - t0;
      row(both ? "bibw" : "bw", size, (both ? 2.0 : 1.0) * size * window * it / s / 1e6, it);
    }
  }
  free(buf);
  free(rbuf);
  free(req);
}

static void rma(const char *name, int put, int bw) {
  char *base;
  MPI_Win win;
  MPI_Win_allocate(max_size, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &win);
  char *local = malloc(max_size);
  memset(local, 7, max_size);
  MPI_Win_lock_all(0, win);
  FOR_SIZES(size) {
    if (size == 0) continue;
    int it, sk;
    loops(size, &it, &sk);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
      double t0 = 0;
      for (int i = 0; i < it + sk; i++) {
        if (i == sk) t0 = MPI_Wtime();
        int reps = bw ? window : 1;
        for (int w = 0; w < reps; w++) {
          if (put) MPI_Put(local, size, MPI_CHAR, 1, 0, size, MPI_CHAR, win);
          else MPI_Get(local, size, MPI_CHAR, 1, 0, size, MPI_CHAR, win);
        }
        MPI_Win_flush(1, win);
      }
      double s = MPI_Wtime() - t0;
      if (bw) row(name, size, (double)size * window * it / s / 1e6, it);
      else row(name, size, s * 1e6 / it, it);
    }
  }
  MPI_Win_unlock_all(win);
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Win_free(&win);
  free(local);
}

static void atomics(void) {
  int64_t *base;
  MPI_Win win;
  MPI_Win_allocate(sizeof(int64_t) * 2, sizeof(int64_t), MPI_INFO_NULL, MPI_COMM_WORLD, &base, &win);
  base[0] = base[1] = 0;
  MPI_Win_lock_all(0, win);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    for (int kind = 1; kind <= 4; kind++) {
      int32_t one32 = 1, zero32 = 0, out32;
      int64_t one64 = 1, zero64 = 0, out64;
      double t0 = 0;
      for (int i = 0; i < iters + skip; i++) {
        if (i == skip) t0 = MPI_Wtime();
        switch (kind) {
          case 1: MPI_Fetch_and_op(&one32, &out32, MPI_INT32_T, 1, 0, MPI_SUM, win); break;
          case 2: MPI_Compare_and_swap(&zero32, &zero32, &out32, MPI_INT32_T, 1, 0, win); break;
          case 3: MPI_Fetch_and_op(&one64, &out64, MPI_INT64_T, 1, 1, MPI_SUM, win); break;
          case 4: MPI_Compare_and_swap(&zero64, &zero64, &out64, MPI_INT64_T, 1, 1, win); break;
        }
        MPI_Win_flush(1, win);
      }
      row("atomic_latency", kind, (MPI_Wtime() - t0) * 1e6 / iters, iters);
    }
  }
  MPI_Win_unlock_all(win);
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Win_free(&win);
}

static void collective(const char *name) {
  long top = max_size < 8 ? 8 : max_size;
  char *sbuf = malloc(top * nranks), *rbuf = malloc(top * nranks);
  memset(sbuf, 1, top * nranks);
  int reduction = strstr(name, "reduce") != NULL;
  int barrier = strcmp(name, "barrier") == 0;
  FOR_SIZES(size) {
    if (!barrier && (size == 0 || (reduction && size < 8))) continue;
    if (barrier && size > min_size) break;
    int it, sk;
    if (barrier) { it = iters; sk = skip; } else loops(size, &it, &sk);
    int count = reduction ? (int)(size / 8) : (int)size;
    MPI_Barrier(MPI_COMM_WORLD);
    double total = 0;
    for (int i = 0; i < it + sk; i++) {
      double t0 = MPI_Wtime();
      if (barrier) MPI_Barrier(MPI_COMM_WORLD);
      else if (!strcmp(name, "bcast")) MPI_Bcast(sbuf, count, MPI_CHAR, 0, MPI_COMM_WORLD);
      else if (!strcmp(name, "reduce")) MPI_Reduce(sbuf, rbuf, count, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
      else if (!strcmp(name, "allreduce")) MPI_Allreduce(sbuf, rbuf, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      else if (!strcmp(name, "allgather")) MPI_Allgather(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, MPI_COMM_WORLD);
      else if (!strcmp(name, "gather")) MPI_Gather(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, 0, MPI_COMM_WORLD);
      else if (!strcmp(name, "scatter")) MPI_Scatter(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, 0, MPI_COMM_WORLD);
      else if (!strcmp(name, "alltoall")) MPI_Alltoall(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, MPI_COMM_WORLD);
      double t1 = MPI_Wtime();
      if (i >= sk) total += t1 - t0;
      MPI_Barrier(MPI_COMM_WORLD);
    }
    double mean = total * 1e6 / it, sum = 0;
    MPI_Reduce(&mean, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    row(name, barrier ? 0 : size, sum / nranks, it);
  }
  free(sbuf);
  free(rbuf);
}

static long parse_size(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*end == 'k' || *end == 'K') v *= 1024;
  if (*end == 'm' || *end == 'M') v *= 1024 * 1024;
  return v;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  if (argc < 2) {
    if (rank == 0) fprintf(stderr, "usage: osu_peer NAME [-m [min:]max] [-i ITER] [-x SKIP] [-W WINDOW]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const char *name = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-m")) {
      char *colon = strchr(argv[i + 1], ':');
      if (colon) {
        *colon = 0;
        if (*argv[i + 1]) min_size = parse_size(argv[i + 1]);
        max_size = parse_size(colon + 1);
      } else {
        max_size = parse_size(argv[i + 1]);
      }
    } else if (!strcmp(argv[i], "-i")) iters = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-x")) skip = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-W")) window = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--cold")) cold = atoi(argv[i + 1]);
  }
  int p2p = !strcmp(name, "latency") || !strcmp(name, "bw") || !strcmp(name, "bibw") || strstr(name, "put_") || strstr(name, "get_") || !strcmp(name, "atomic_latency");
  int bw = !strcmp(name, "bw") || !strcmp(name, "bibw") || strstr(name, "_bw") != NULL;
  defaults(bw, !p2p, p2p ? 0 : 1, p2p ? 4L << 20 : 1L << 20);
  int cold_lat = !strcmp(name, "latency"), cold_bar = !strcmp(name, "barrier"), cold_all = !strcmp(name, "allreduce");
  double cold_us = -1;
  if (cold > 0 && (cold_lat || cold_bar || cold_all)) {
    char cbuf[8], cinto[8];
    memset(cbuf, rank + 1, sizeof cbuf);
    double t0 = MPI_Wtime();
    for (int i = 0; i < cold; i++) {
      if (cold_bar) {
        MPI_Barrier(MPI_COMM_WORLD);
      } else if (cold_all) {
        double x = i, r;
        MPI_Allreduce(&x, &r, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      } else if (rank == 0) {
        MPI_Send(cbuf, 8, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
        MPI_Recv(cinto, 8, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == 1) {
        MPI_Recv(cinto, 8, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(cbuf, 8, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
      }
    }
    cold_us = (MPI_Wtime() - t0) * 1e6 / (cold_lat ? 2.0 * cold : cold);
  }
  if (!strcmp(name, "latency")) latency();
  else if (!strcmp(name, "bw")) bandwidth(0);
  else if (!strcmp(name, "bibw")) bandwidth(1);
  else if (!strcmp(name, "put_latency")) rma(name, 1, 0);
  else if (!strcmp(name, "get_latency")) rma(name, 0, 0);
  else if (!strcmp(name, "put_bw")) rma(name, 1, 1);
  else if (!strcmp(name, "get_bw")) rma(name, 0, 1);
  else if (!strcmp(name, "atomic_latency")) atomics();
  else collective(name);
  if (cold_us >= 0 && rank == 0) {
    printf("{\"benchmark\":\"%s\",\"size\":%d,\"value\":%.4f,\"iterations\":%d,\"cold\":true}\n", name, cold_bar ? 0 : 8, cold_us, cold);
    fflush(stdout);
  }
  MPI_Finalize();
  return 0;
}
