/*
 * The Open MPI side of bench/cold.ts: bench/cold-app.ts in C. Right after
 * MPI_Init, CHUNKS chunks of PER operations are timed (cold), then WARMUP
 * more run untimed and CHUNKS chunks are timed again (steady). Rank 0 prints
 * the same JSON line as the mprun app: microseconds per operation per chunk
 * (latency: one way, half a round trip).
 *
 *   mpicc -O2 -o cold_peer cold_peer.c
 *   mpirun -np N ./cold_peer latency|barrier|allreduce [CHUNKS [PER [WARMUP]]]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *kind = argc > 1 ? argv[1] : "";
  int chunks = argc > 2 ? atoi(argv[2]) : 16;
  int per = argc > 3 ? atoi(argv[3]) : 500;
  int warmup = argc > 4 ? atoi(argv[4]) : 20000;
  int latency = !strcmp(kind, "latency"), barrier = !strcmp(kind, "barrier"), allreduce = !strcmp(kind, "allreduce");
  if ((!latency && !barrier && !allreduce) || chunks < 1 || per < 1 || warmup < 0 || (latency && size < 2)) {
    if (rank == 0) fprintf(stderr, "usage: cold_peer latency|barrier|allreduce [CHUNKS [PER [WARMUP]]] (latency: 2 ranks or more)\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  int warm_chunks = (warmup + per - 1) / per;
  int total = chunks + warm_chunks + chunks;
  double *sec = calloc(total, sizeof(double));
  double sum = 0;
  char buf[8], into[8];
  memset(buf, rank + 1, sizeof buf);

  if (barrier) {
    for (int c = 0; c < total; c++) {
      double t0 = MPI_Wtime();
      for (int i = 0; i < per; i++) MPI_Barrier(MPI_COMM_WORLD);
      sec[c] = MPI_Wtime() - t0;
    }
  } else if (allreduce) {
    for (int c = 0; c < total; c++) {
      double t0 = MPI_Wtime();
      for (int i = 0; i < per; i++) {
        double x = i, r;
        MPI_Allreduce(&x, &r, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        sum += r;
      }
      sec[c] = MPI_Wtime() - t0;
    }
  } else if (rank < 2) {
    for (int c = 0; c < total; c++) {
      double t0 = MPI_Wtime();
      for (int i = 0; i < per; i++) {
        if (rank == 0) {
          MPI_Send(buf, 8, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
          MPI_Recv(into, 8, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
          MPI_Recv(into, 8, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          MPI_Send(buf, 8, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
        }
      }
      sec[c] = MPI_Wtime() - t0;
    }
  }

  if (allreduce && sum != (double)size * total * per * (per - 1) / 2) {
    fprintf(stderr, "cold_peer: allreduce summed to %g\n", sum);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (rank == 0) {
    double div = latency ? 2.0 * per : per;
    printf("{\"system\":\"openmpi\",\"kind\":\"%s\",\"ranks\":%d,\"per\":%d,\"cold\":[", kind, size, per);
    for (int c = 0; c < chunks; c++) printf("%s%.4f", c ? "," : "", sec[c] * 1e6 / div);
    printf("],\"steady\":[");
    for (int c = 0; c < chunks; c++) printf("%s%.4f", c ? "," : "", sec[chunks + warm_chunks + c] * 1e6 / div);
    printf("]}\n");
    fflush(stdout);
  }
  free(sec);
  MPI_Finalize();
  return 0;
}
