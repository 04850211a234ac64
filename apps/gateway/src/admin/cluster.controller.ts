import { ApiController, ApiRoute } from '../docs/api-doc.js';
import { ClusterReport, clusterBodySchema } from './cluster-report.js';

/** `/admin/cluster`: main.ts puts the admin-key check in front of it. */
@ApiController('admin/cluster')
export class ClusterController {
  constructor(private readonly report: ClusterReport) {}

  @ApiRoute('get', '', {
    summary: 'Live workers, queue depths, token counters and prefix-cache hits (admin keys)',
    tag: 'Admin',
    response: clusterBodySchema,
  })
  async read() {
    return this.report.read();
  }
}
