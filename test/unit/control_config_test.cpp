// Configuration: a good file loads; every class of mistake stops start-up with
// the file, line, key and reason.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "dpgate/control/config.hpp"

using namespace dpgate::control;

namespace {

const char* kGood = R"(
workers = 2;
burst = 32;
ports = (
  { name = "lan"; device = "net_af_packet0,iface=veth0,qpairs=2";
    addresses = [ "198.18.1.1/24", "198.18.3.1/24" ]; mtu = 1500; },
  { name = "wan"; device = "0000:01:00.0"; addresses = [ "198.18.2.1/24" ];
    mac = "02:00:00:00:02:01"; }
);
routes = ( { prefix = "198.19.0.0/16"; gateway = "198.18.2.2"; port = "wan"; },
           { prefix = "198.18.4.0/24"; port = "lan"; } );
neighbours = ( { address = "198.18.2.2"; mac = "02:00:00:00:02:02"; port = "wan"; } );
icmp = { rate = 100; burst = 10; };
arp = { queue = 32; retry_ms = 500; };
)";

ConfigError error_of(const std::string& text) {
  auto r = load_config_text(text, "test.conf");
  REQUIRE(std::holds_alternative<ConfigError>(r));
  return std::get<ConfigError>(r);
}

// A minimal valid config with one line replaced/added.
std::string with(const std::string& extra, const std::string& ports = R"(ports = (
  { name = "lan"; device = "net_ring0"; addresses = [ "198.18.1.1/24" ]; }
);)") {
  return ports + "\n" + extra + "\n";
}

}  // namespace

TEST_CASE("a complete configuration loads with every key") {
  auto r = load_config_text(kGood, "good.conf");
  if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->to_string());
  const Config& c = std::get<Config>(r);
  CHECK(c.workers == 2);
  REQUIRE(c.ports.size() == 2);
  CHECK(c.ports[0].addresses.size() == 2);
  CHECK(c.ports[1].mac.has_value());
  REQUIRE(c.routes.size() == 2);
  CHECK(c.routes[0].port == 1);
  CHECK(c.routes[0].gateway == *dpgate::net::parse_ipv4("198.18.2.2"));
  CHECK(c.routes[1].gateway == 0);
  CHECK(c.neighbours.size() == 1);
  CHECK(c.icmp_rate == 100);
  CHECK(c.arp_queue == 32);
  CHECK(c.arp_retry_ms == 500);
}

TEST_CASE("the shipped sample configurations load") {
  const char* root = std::getenv("DPGATE_SOURCE_ROOT");
  REQUIRE(root != nullptr);
  for (const char* name : {"/conf/dpgate.conf", "/conf/demo.conf"}) {
    auto r = load_config_file(std::string(root) + name);
    INFO(name);
    if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->to_string());
  }
}

TEST_CASE("a syntax error names the file and line") {
  auto e = error_of("workers = 2;\nports = ( { name = ; } );\n");
  CHECK(e.line == 2);
  CHECK_THAT(e.to_string(), Catch::Contains("test.conf:2") && Catch::Contains("syntax error"));
}

TEST_CASE("a missing required key is named") {
  auto e = error_of("workers = 1;\n");
  CHECK(e.key == "ports");
  CHECK_THAT(e.to_string(), Catch::Contains("missing required key"));
  auto e2 = error_of(R"(ports = ( { name = "lan"; addresses = [ "198.18.1.1/24" ]; } );)");
  CHECK(e2.key == "ports.[0].device");
  CHECK(e2.line == 1);
}

TEST_CASE("an unknown key is an error, not a silent default") {
  auto e = error_of(with("wrokers = 2;"));
  CHECK(e.key == "wrokers");
  CHECK(e.line == 4);
  CHECK_THAT(e.reason, Catch::Contains("unknown key"));
}

TEST_CASE("a value of the wrong type is named with its key and line") {
  auto e = error_of(with("workers = \"two\";"));
  CHECK(e.key == "workers");
  CHECK(e.line == 4);
  CHECK_THAT(e.reason, Catch::Contains("integer"));
}

TEST_CASE("a number out of range says the range") {
  auto e = error_of(with("burst = 500;"));
  CHECK(e.key == "burst");
  CHECK_THAT(e.reason, Catch::Contains("between 1 and 64"));
  auto e2 = error_of(with("", R"(ports = ( { name = "lan"; device = "net_ring0";
    addresses = [ "198.18.1.1/24" ]; mtu = 20; } );)"));
  CHECK(e2.key == "ports.[0].mtu");
  CHECK(e2.line == 2);
}

TEST_CASE("a bad address or prefix is quoted back") {
  auto e = error_of(R"(ports = ( { name = "lan"; device = "net_ring0"; addresses = [ "198.18.1.300/24" ]; } );)");
  CHECK(e.key == "ports.[0].addresses.[0]");
  CHECK_THAT(e.reason, Catch::Contains("198.18.1.300/24"));
  auto e2 = error_of(R"(ports = ( { name = "lan"; device = "net_ring0"; addresses = [ "198.18.1.0/24" ]; } );)");
  CHECK_THAT(e2.reason, Catch::Contains("not a usable host address"));
  auto e3 = error_of(with(R"(routes = ( { prefix = "198.19.0.1/16"; port = "lan"; } );)"));
  CHECK(e3.key == "routes.[0].prefix");
  CHECK_THAT(e3.reason, Catch::Contains("198.19.0.0/16"));
}

TEST_CASE("a device that is neither PCI nor a vdev is rejected") {
  auto e = error_of(R"(ports = ( { name = "lan"; device = "eth0"; addresses = [ "198.18.1.1/24" ]; } );)");
  CHECK(e.key == "ports.[0].device");
  CHECK_THAT(e.reason, Catch::Contains("PCI address"));
}

TEST_CASE("references to ports must name a configured port") {
  auto e = error_of(with(R"(routes = ( { prefix = "198.19.0.0/16"; gateway = "198.18.1.2"; port = "wan"; } );)"));
  CHECK(e.key == "routes.[0].port");
  CHECK_THAT(e.reason, Catch::Contains("no port named 'wan'"));
}

TEST_CASE("a gateway must be on a connected network of its port") {
  auto e = error_of(with(R"(routes = ( { prefix = "198.19.0.0/16"; gateway = "198.18.9.2"; port = "lan"; } );)"));
  CHECK(e.key == "routes.[0].gateway");
  CHECK(e.line == 4);
  CHECK_THAT(e.reason, Catch::Contains("not on a connected network"));
}

TEST_CASE("duplicates are rejected") {
  auto e = error_of(R"(ports = ( { name = "lan"; device = "net_ring0"; addresses = [ "198.18.1.1/24" ]; },
    { name = "lan"; device = "net_ring1"; addresses = [ "198.18.2.1/24" ]; } );)");
  CHECK(e.key == "ports.[1].name");
  CHECK(e.line == 2);
  auto e2 = error_of(R"(ports = ( { name = "a"; device = "net_ring0"; addresses = [ "198.18.1.1/24" ]; },
    { name = "b"; device = "net_ring1"; addresses = [ "198.18.1.1/24" ]; } );)");
  CHECK_THAT(e2.reason, Catch::Contains("used twice"));
}

TEST_CASE("an mbuf pool too small for the queues is refused with the minimum") {
  auto e = error_of(with("mbuf_pool_size = 2000;"));
  CHECK(e.key == "mbuf_pool_size");
  CHECK_THAT(e.reason, Catch::Contains("at least"));
}

TEST_CASE("a missing file is reported as such") {
  auto r = load_config_file("/nonexistent/dpgate.conf");
  REQUIRE(std::holds_alternative<ConfigError>(r));
  CHECK_THAT(std::get<ConfigError>(r).to_string(), Catch::Contains("/nonexistent/dpgate.conf: cannot read"));
}

TEST_CASE("a net_pcap port whose arguments secondary processes would see cut is named") {
  auto port = [](const std::string& device) {
    PortConfig p;
    p.name = "lan";
    p.device = device;
    return p;
  };
  // 63 characters of arguments reach dpdk-dumpcap whole; 64 do not.
  const std::string args63 = "rx_pcap=in.pcap,tx_pcap=" + std::string(34, 'o') + ".pcap";
  REQUIRE(args63.size() == 63);
  CHECK(capture_attach_problem(port("net_pcap0," + args63)).empty());
  const std::string problem = capture_attach_problem(port("net_pcap0," + args63 + "x"));
  CHECK_THAT(problem, Catch::StartsWith("port lan: ") && Catch::Contains("only the first 63 characters") &&
                          Catch::Contains("these have 64"));
  // The driver's alias too; other drivers keep their whole arguments.
  CHECK_FALSE(capture_attach_problem(port("eth_pcap1," + args63 + "x")).empty());
  CHECK(capture_attach_problem(port("net_af_packet0,iface=" + std::string(80, 'v'))).empty());
  CHECK(capture_attach_problem(port("0000:01:00.0")).empty());
  CHECK(capture_attach_problem(port("net_pcap0")).empty());
}
